#!/usr/bin/env bash
# Remote-write load benchmark (issue 7): release builds of the connector, timestream-local and
# the load tool; timestream-local as its own process in discard mode (validates every
# WriteRecords call and answers it, stores nothing) with LATENCY_MS added per call; the
# connector with its defaults in between; `remote-write-load` drives it and reports samples/s,
# request latency percentiles, the connector's CPU per sample and RSS (from /proc) and the
# WriteRecords bytes per sample (from the connector's /metrics).
#
#   ./scripts/bench-write-load.sh                       # instant backend, then 20 ms per call
#   LATENCIES="0" DURATION=600s ./scripts/bench-write-load.sh   # 10-minute RSS run
#
# Environment: LATENCIES (ms per WriteRecords, space separated, default "0 20"), DURATION (30s),
# WARMUP (5s), SERIES per request (2500), LABELS per series (8), SENDERS in flight (4),
# CONNECTOR_ARGS (extra connector flags), LOADGEN_ARGS (extra `remote-write-load` flags, e.g.
# `--heavy-senders 1`: see scripts/bench-heavy-latency.sh), CONNECTOR_BIN (a connector binary
# to measure instead of this tree's, e.g. an older build for a before/after comparison).
# Ports CONNECTOR_PORT (19201) and STORE_PORT (18787); the run stops if either is taken, so
# two benchmarks on one machine never measure each other's processes.
set -euo pipefail
cd "$(dirname "$0")/.."

LATENCIES=${LATENCIES:-"0 20"}
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-5s}
SERIES=${SERIES:-2500}
LABELS=${LABELS:-8}
SENDERS=${SENDERS:-4}
CONNECTOR_ARGS=${CONNECTOR_ARGS:-}
LOADGEN_ARGS=${LOADGEN_ARGS:-}
STORE=127.0.0.1:${STORE_PORT:-18787}
CONNECTOR=127.0.0.1:${CONNECTOR_PORT:-19201}

cargo build --release --locked -q -p timestream-prometheus-connector -p timestream-local -p remote-write-load
bin=${CARGO_TARGET_DIR:-target}/release
connector_bin=${CONNECTOR_BIN:-$bin/timestream-prometheus-connector}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() {
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

api() { # operation, JSON body: the awsJson1_0 protocol the SDKs speak
  curl -s -X POST "http://$STORE/" -H "Content-Type: application/x-amz-json-1.0" \
    -H "X-Amz-Target: Timestream_20181101.$1" -d "$2" >/dev/null
}

for addr in "$STORE" "$CONNECTOR"; do
  if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then
    echo "$addr is already in use (another benchmark?); set STORE_PORT / CONNECTOR_PORT" >&2
    exit 1
  fi
done

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
for latency in $LATENCIES; do
  "$bin/timestream-local" --data-dir "$work/store-$latency" --listen-address "$STORE" \
    --discard-writes --fault-latency-ms "$latency" --fault-operations WriteRecords \
    2>"$work/store.log" >/dev/null &
  store_pid=$!
  pids+=("$store_pid")
  wait_for "http://$STORE/_local/faults"
  api CreateDatabase '{"DatabaseName":"prometheusDatabase"}'
  api CreateTable '{"DatabaseName":"prometheusDatabase","TableName":"prometheusMetricsTable"}'

  # shellcheck disable=SC2086
  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
    "$connector_bin" --web.listen-address="$CONNECTOR" \
    --region=us-east-1 --write-base-endpoint="http://$STORE" --query-base-endpoint="http://$STORE" \
    --default-database=prometheusDatabase --default-table=prometheusMetricsTable --log.level=warn $CONNECTOR_ARGS \
    2>"$work/connector.log" >/dev/null &
  connector_pid=$!
  pids+=("$connector_pid")
  wait_for "http://$CONNECTOR/-/ready"

  echo
  echo "== WriteRecords latency ${latency} ms =="
  # shellcheck disable=SC2086
  "$bin/remote-write-load" $LOADGEN_ARGS --url "http://$CONNECTOR/write" --series "$SERIES" --labels "$LABELS" \
    --concurrency "$SENDERS" --duration "$DURATION" --warmup "$WARMUP" \
    --connector-pid "$connector_pid" --backend-pid "$store_pid" \
    --metrics-url "http://$CONNECTOR/metrics"

  kill "$connector_pid" "$store_pid"
  wait "$connector_pid" "$store_pid" 2>/dev/null || true
  pids=()
done
