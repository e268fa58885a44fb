#!/usr/bin/env bash
# Build the static shim (shim/cni2cnm-shim.c) into cni2cnm/_shim/cni2cnm-shim, where
# `cni2cnm install` finds it (git-ignored).  Needs Debian's gcc and libc6-dev (static glibc);
# scripts/bootstrap.sh installs them.  Usage: scripts/shim.sh [OUTPUT]
# Prints the output path on stdout; fails if the result is not a static executable.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/cni2cnm/_shim/cni2cnm-shim}
# The version the shim accepts in the daemon's hello: the package's, read without Python
# (C2C_SHIM_VERSION: another, for the tests of install's version check).
VERSION=${C2C_SHIM_VERSION:-$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/cni2cnm/__init__.py")}
[ -n "$VERSION" ] || { echo "shim.sh: no __version__ in cni2cnm/__init__.py" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp "$OUT.XXXX")
trap 'rm -f "$tmp"' EXIT
${CC:-gcc} -std=gnu11 -static -Os -s -Wall -Wextra -Werror -DCNI2CNM_VERSION="\"$VERSION\"" \
    -o "$tmp" "$ROOT/shim/cni2cnm-shim.c"
if ldd "$tmp" >/dev/null 2>&1; then
    echo "shim.sh: $tmp is dynamically linked" >&2
    exit 1
fi
chmod 0755 "$tmp"
mv -f "$tmp" "$OUT"
trap - EXIT
echo "$OUT"
