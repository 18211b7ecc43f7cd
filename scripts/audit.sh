#!/usr/bin/env bash
# Dependency hygiene, run by .ci/run. cargo-deny checks the lock file against deny.toml:
#   sources  - every crate comes from crates.io (no git, no other registry);
#   licenses - every crate's license is in the allow list;
#   bans     - no banned crate (OpenSSL/native-tls), no wildcard version requirements.
# These need no network beyond what cargo itself uses. Only errors are printed; run
# `cargo deny --workspace check` to also see the warnings (duplicate versions, the path
# dependency counted as a wildcard).
# The RustSec vulnerability check (`advisories`) needs the advisory database, which is only
# published as a git repository on GitHub: it runs when that is reachable and is reported as
# NOT RUN otherwise, never as passed.
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qF "$DENY_VERSION"; then
  echo "installing cargo-deny $DENY_VERSION from crates.io"
  cargo install --locked --quiet cargo-deny --version "$DENY_VERSION"
fi

cargo deny -L error --workspace --locked check --hide-inclusion-graph bans licenses sources

if timeout 30 git ls-remote --heads https://github.com/rustsec/advisory-db >/dev/null 2>&1; then
  cargo deny -L error --workspace --locked check --hide-inclusion-graph advisories
else
  echo "NOT RUN: RustSec advisory check (the advisory database on GitHub is unreachable from here)"
fi
