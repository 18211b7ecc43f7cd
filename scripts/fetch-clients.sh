#!/usr/bin/env bash
# Fetches the real remote-read/write clients the integration suite tests against and
# that Debian stable does not carry in a recent enough version:
#   - Prometheus 3.x + promtool      (Debian unstable packages `prometheus`, `promtool`)
#   - VictoriaMetrics, vmagent, vmctl (Debian unstable package `victoria-metrics`)
# without installing anything from unstable: a private apt configuration (its own
# sources file, lists and cache under a temp dir) downloads the .debs, and
# `dpkg-deb -x` unpacks them into a cache folder. The binaries are Go programs that run
# on Debian stable; installing the packages would upgrade libc, extracting does not.
#
# The mirror is the one this machine's apt already uses (read from
# /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list), with `Suites: sid`; the
# Release file is checked with the machine's Debian archive keyring, as apt always does.
#
# Output: $CLIENTS_DIR (default: <repo>/.cache/clients) holding
#   prometheus3/usr/bin/{prometheus,promtool}
#   victoria-metrics/usr/bin/{victoria-metrics,vmagent,vmctl}
#   VERSIONS (the Debian package versions)
#   env.sh   (PROMETHEUS3_BIN, PROMTOOL3_BIN, VICTORIA_METRICS_BIN, VMAGENT_BIN, VMCTL_BIN)
# The integration suite finds the binaries there (or through those variables).
# Idempotent: does nothing when every binary is already there (FORCE=1 fetches again).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS_DIR="${CLIENTS_DIR:-$PWD/.cache/clients}"
SUITE="${CLIENTS_SUITE:-sid}"

bins=(
  "prometheus3/usr/bin/prometheus"
  "prometheus3/usr/bin/promtool"
  "victoria-metrics/usr/bin/victoria-metrics"
  "victoria-metrics/usr/bin/vmagent"
  "victoria-metrics/usr/bin/vmctl"
)

write_env() {
  cat >"$CLIENTS_DIR/env.sh" <<EOF
# Written by scripts/fetch-clients.sh
export PROMETHEUS3_BIN="$CLIENTS_DIR/prometheus3/usr/bin/prometheus"
export PROMTOOL3_BIN="$CLIENTS_DIR/prometheus3/usr/bin/promtool"
export VICTORIA_METRICS_BIN="$CLIENTS_DIR/victoria-metrics/usr/bin/victoria-metrics"
export VMAGENT_BIN="$CLIENTS_DIR/victoria-metrics/usr/bin/vmagent"
export VMCTL_BIN="$CLIENTS_DIR/victoria-metrics/usr/bin/vmctl"
EOF
}

all_present=1
for b in "${bins[@]}"; do
  [ -x "$CLIENTS_DIR/$b" ] || all_present=0
done
if [ "$all_present" = 1 ] && [ "${FORCE:-0}" != 1 ]; then
  write_env
  echo "fetch-clients: already in $CLIENTS_DIR"
  exit 0
fi

# The first Debian mirror this machine's apt uses (not a -security or -updates one).
mirror_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: "URIs: a b" (one stanza may list several)
    while read -r uri; do
      case "$uri" in
        *security*) ;;
        http://* | https://*) echo "$uri"; return 0 ;;
      esac
    done < <(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) print $i }' "$f")
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # one-line style: "deb [options] URI suite components"
    while read -r uri; do
      case "$uri" in
        *security*) ;;
        http://* | https://*) echo "$uri"; return 0 ;;
      esac
    done < <(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break } }' "$f")
  done
  return 1
}

uri="${CLIENTS_MIRROR:-$(mirror_uri || true)}"
if [ -z "$uri" ]; then
  echo "fetch-clients: no Debian mirror found in /etc/apt/sources.list{,.d/}; set CLIENTS_MIRROR" >&2
  exit 1
fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -f "$keyring" ]; then
  echo "fetch-clients: $keyring missing (package debian-archive-keyring)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial" \
  "$work/preferences.d" "$work/debs"
touch "$work/status"
# apt downloads as the unprivileged `_apt` user when it can write the target folders
# (as root without this it still works, with a warning about the missing sandbox).
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
  chmod 755 "$work"
  chown -R _apt "$work/lists" "$work/cache" "$work/debs"
fi
cat >"$work/sources.list.d/clients.sources" <<EOF
Types: deb
URIs: $uri
Suites: $SUITE
Components: main
Signed-By: $keyring
EOF

apt_opts=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$work/sources.list.d"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=$work/preferences.d"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::State::Status=$work/status"
  -o "Dir::Cache=$work/cache"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "Acquire::Languages=none"
  -o "APT::Get::List-Cleanup=false"
  -o "Debug::NoLocking=true"
)

echo "fetch-clients: apt-get update ($SUITE, private lists in $work)"
apt-get "${apt_opts[@]}" -qq update
# apt-get download writes into the current directory.
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download prometheus promtool victoria-metrics)

mkdir -p "$CLIENTS_DIR"
rm -rf "$CLIENTS_DIR/prometheus3" "$CLIENTS_DIR/victoria-metrics" "$CLIENTS_DIR/VERSIONS.new"
for deb in "$work"/debs/*.deb; do
  name="$(dpkg-deb -f "$deb" Package)"
  version="$(dpkg-deb -f "$deb" Version)"
  case "$name" in
    prometheus | promtool) dest="$CLIENTS_DIR/prometheus3" ;;
    victoria-metrics) dest="$CLIENTS_DIR/victoria-metrics" ;;
    *) continue ;;
  esac
  dpkg-deb -x "$deb" "$dest"
  # Debian's VictoriaMetrics binaries print no version: keep the package versions.
  echo "$name $version" >>"$CLIENTS_DIR/VERSIONS.new"
  echo "fetch-clients: $name $version -> $dest"
done

for b in "${bins[@]}"; do
  if [ ! -x "$CLIENTS_DIR/$b" ]; then
    echo "fetch-clients: $b missing after extraction" >&2
    exit 1
  fi
done
mv "$CLIENTS_DIR/VERSIONS.new" "$CLIENTS_DIR/VERSIONS"
write_env
echo "fetch-clients: done ($CLIENTS_DIR)"
