#!/usr/bin/env bash
# Builds the connector as an AWS Lambda custom-runtime binary named `bootstrap` and packs it
# into serverless/dist/bootstrap.zip, the CodeUri of serverless/template.yml.
#
#   serverless/build.sh                      # for this machine's target (x86_64 Linux → Architecture=x86_64)
#   serverless/build.sh --target aarch64-unknown-linux-gnu   # Architecture=arm64; needs a cross toolchain
#
# The binary is built with a `lambda` profile (release, no debug info, symbols stripped) so
# the zip stays small and the ordinary release build is left alone. provided.al2023 ships
# glibc 2.34: the script refuses a binary that needs a newer glibc (see README.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
target=""
max_glibc="2.34"

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="${2:?--target needs a value}"; shift 2 ;;
        --target=*) target="${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

args=(build --locked -p timestream-prometheus-connector --bin timestream-prometheus-connector
      --profile lambda
      --config 'profile.lambda.inherits="release"'
      --config 'profile.lambda.debug=false'
      --config 'profile.lambda.strip="symbols"')
if [ -n "$target" ]; then
    args+=(--target "$target")
fi
(cd "$root" && cargo "${args[@]}")

target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "$target" ]; then
    bin="$target_dir/$target/lambda/timestream-prometheus-connector"
else
    bin="$target_dir/lambda/timestream-prometheus-connector"
fi
[ -x "$bin" ] || { echo "build.sh: built binary not found at $bin" >&2; exit 1; }

# Highest glibc symbol version the binary needs (empty for a static/musl binary).
needed=""
if command -v objdump >/dev/null 2>&1; then
    needed="$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1 || true)"
fi
if [ -n "$needed" ] && [ "$(printf '%s\n%s\n' "$needed" "$max_glibc" | sort -V | tail -n 1)" != "$max_glibc" ]; then
    echo "build.sh: the binary needs glibc $needed but provided.al2023 has $max_glibc;" >&2
    echo "          build on Amazon Linux 2023 (or an older distribution), or with cargo-zigbuild" >&2
    echo "          for x86_64-unknown-linux-gnu.$max_glibc; see serverless/README.md" >&2
    exit 1
fi

mkdir -p "$here/dist"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$bin" "$stage/bootstrap"
chmod 755 "$stage/bootstrap"
zip_path="$here/dist/bootstrap.zip"
rm -f "$zip_path"
if command -v zip >/dev/null 2>&1; then
    (cd "$stage" && zip -q -X "$zip_path" bootstrap)
else
    # Same result without the zip tool: the entry must keep its executable bit.
    python3 - "$stage/bootstrap" "$zip_path" <<'EOF'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read())
EOF
fi

arch="$(file -b "$bin" 2>/dev/null | cut -d, -f2 | sed 's/^ *//' || true)"
echo "built $zip_path ($(du -h "$zip_path" | cut -f1)) from $bin"
echo "  target: ${target:-host ($(rustc -vV | sed -n 's/^host: //p'))}${arch:+, $arch}"
echo "  glibc needed: ${needed:-none (static)}; provided.al2023 has $max_glibc"
echo "  deploy with the matching Architecture parameter (x86_64 or arm64)"
