#!/usr/bin/env bash
# What a large decode does to other requests (issue 13): light remote-write load (few series per
# request, two senders) against the connector on timestream-local in discard mode, first alone,
# then with one and two extra senders that keep posting a body of just under the 64 MiB
# decompressed cap (malformed at its very end, so all of it is decoded and then refused with
# 400), then one that is valid and written. Compare the light requests' latency percentiles
# across the runs; the heavy requests are reported on their own `heavy:` line.
#
#   ./scripts/bench-heavy-latency.sh            # DURATION=20s per run
set -euo pipefail
cd "$(dirname "$0")/.."
export LATENCIES=0 DURATION=${DURATION:-20s} WARMUP=${WARMUP:-5s} SERIES=${SERIES:-100} SENDERS=${SENDERS:-2}
for heavy in "" "--heavy-senders 1" "--heavy-senders 2" "--heavy-senders 1 --heavy-kind valid"; do
  echo
  echo "######## light load, heavy: ${heavy:-none}"
  LOADGEN_ARGS="$heavy" ./scripts/bench-write-load.sh
done
