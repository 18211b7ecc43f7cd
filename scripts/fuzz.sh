#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 45) each and fails on
# the first crash, printing the reproducer. Installs cargo-fuzz when missing.
#
# Only a stable toolchain is needed: cargo-fuzz passes nightly-only flags
# (-Zsanitizer, -Cpasses=sancov…), which RUSTC_BOOTSTRAP=1 lets stable rustc accept.
# FUZZ_SANITIZER=none|address (default address: the ASan runtime ships with stable).
# Seeds come from fuzz/seeds/<target>/ (committed, read-only); what the fuzzer finds goes
# to a scratch corpus, so the tree stays clean. Extra arguments go to libFuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-45}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd fuzz
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# One build for all targets (they share every dependency).
cargo fuzz build --sanitizer "$FUZZ_SANITIZER"

failed=0
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target" "artifacts/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  log="$scratch/$target.log"
  echo "fuzzing $target for ${FUZZ_SECONDS}s"
  # -timeout: one input running 30 s counts as a failure (a hang in request handling).
  if cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" "$scratch/$target" "${seeds[@]}" -- \
      -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
      "$@" >"$log" 2>&1; then
    runs="$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
    echo "$target: ok, ${runs:-?} executions in ${FUZZ_SECONDS}s, $(find "$scratch/$target" -type f | wc -l) corpus entries"
  else
    failed=1
    tail -n 60 "$log"
    crash="$(grep -o 'artifacts/[^ ]*' "$log" | tail -n 1 || true)"
    echo "FUZZ FAILURE in $target; reproducer: fuzz/${crash:-artifacts/$target/ (see log above)}"
    echo "reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $FUZZ_SANITIZER $target ${crash:-<file>})"
  fi
done
exit "$failed"
