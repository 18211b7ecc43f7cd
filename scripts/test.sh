#!/usr/bin/env bash
# Runs the whole test suite: unit, end-to-end (real AWS SDK against timestream-local),
# and the real-client integration suite (Prometheus 2.42 and 3.x, vmagent, vmctl).
# Installs what the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
pip_need=()
command -v aws >/dev/null 2>&1 || pip_need+=(awscli)
command -v cfn-lint >/dev/null 2>&1 || pip_need+=(cfn-lint)
if [ ${#pip_need[@]} -gt 0 ]; then
  echo "installing from PyPI: ${pip_need[*]}"
  python3 -m pip install --quiet "${pip_need[@]}"
  hash -r
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

# Prometheus 3.x, vmagent, vmctl and VictoriaMetrics for the integration suite: Debian
# unstable packages extracted into .cache/clients (nothing from unstable is installed).
./scripts/fetch-clients.sh
# shellcheck source=/dev/null
. .cache/clients/env.sh

# Tests that need a missing tool fail when CI is set; elsewhere they skip loudly and
# are listed here at the end (tests/support/tools.rs, integration/harness/clients.rs).
skipped_log="${CARGO_TARGET_DIR:-target}/tmp/skipped-tests.log"
rm -f "$skipped_log"
status=0
cargo test --workspace --locked "$@" || status=$?
# The panic test needs a route that exists only with this cargo feature (never in release).
cargo test --locked --features test-panic-route --test reliability_panic "$@" || status=$?
if [ -s "$skipped_log" ]; then
  echo
  echo "WARNING: $(wc -l <"$skipped_log") test(s) skipped for lack of a tool:"
  sort "$skipped_log" | uniq -c
fi
exit $status
