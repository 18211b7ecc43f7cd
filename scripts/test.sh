#!/usr/bin/env bash
# Runs the whole test suite: unit, end-to-end (real AWS SDK against timestream-local),
# and the real-Prometheus integration suite. Installs what the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
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

cargo test --workspace --locked "$@"
# The panic test needs a route that exists only with this cargo feature (never in release).
cargo test --locked --features test-panic-route --test reliability_panic "$@"
