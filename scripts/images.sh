#!/usr/bin/env bash
# Build the test images locally (never pulls: no registry is reachable).
#
#   scripts/images.sh DOCKER_HOST
#
#   local/busybox:latest                  busybox-static with a symlink in /bin for every applet
#   local/pause:3.10, registry.k8s.io/pause:3.10   scripts/pause.c, built static
#
# Images that already exist are left alone.  Needs busybox-static and gcc (scripts/bootstrap.sh).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DOCKER_HOST" >&2
    exit 2
fi
HOST=$1
DOCKER=${DOCKER:-docker}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUSYBOX_IMAGE=local/busybox:latest
PAUSE_IMAGE=local/pause:3.10
PAUSE_ALIAS=registry.k8s.io/pause:3.10

unset DOCKER_CONTEXT

log() { echo "images.sh: $*" >&2; }
dk() { "$DOCKER" -H "$HOST" "$@"; }
have() { dk image inspect "$1" >/dev/null 2>&1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/c2c-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Stream a rootfs directory as a tar owned by root.
tar_rootfs() {
    tar --numeric-owner --owner=0 --group=0 -C "$1" -c .
}

build_busybox() {
    local bb root applet n=0
    bb=/bin/busybox
    [ -x "$bb" ] || die_missing "busybox-static ($bb)"
    if ldd "$bb" >/dev/null 2>&1; then
        echo "images.sh: $bb is dynamically linked; install busybox-static" >&2
        exit 1
    fi
    root="$work/busybox"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/proc" "$root/sys" \
        "$root/dev" "$root/var/run"
    chmod 1777 "$root/tmp"
    cp "$bb" "$root/bin/busybox"
    for applet in $("$bb" --list); do
        [ "$applet" = busybox ] && continue
        ln -s busybox "$root/bin/$applet"
        n=$((n + 1))
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar_rootfs "$root" | dk import \
        -c 'ENV PATH=/bin' \
        -c 'CMD ["sh"]' \
        -m "cni2cnm test busybox ($n applets)" \
        - "$BUSYBOX_IMAGE" >/dev/null
    log "built $BUSYBOX_IMAGE ($n applets)"
}

build_pause() {
    local root
    command -v gcc >/dev/null || die_missing "gcc"
    root="$work/pause"
    mkdir -p "$root"
    gcc -Os -static -s -Wall -Wextra -o "$root/pause" "$HERE/pause.c"
    tar_rootfs "$root" | dk import \
        -c 'ENTRYPOINT ["/pause"]' \
        -m "cni2cnm test pause" \
        - "$PAUSE_IMAGE" >/dev/null
    log "built $PAUSE_IMAGE"
}

die_missing() {
    echo "images.sh: $1 is missing; run scripts/bootstrap.sh" >&2
    exit 1
}

dk version --format '{{.Server.Version}}' >/dev/null \
    || { echo "images.sh: no engine answers at $HOST" >&2; exit 1; }

have "$BUSYBOX_IMAGE" || build_busybox
have "$PAUSE_IMAGE" || build_pause
if ! have "$PAUSE_ALIAS"; then
    dk tag "$PAUSE_IMAGE" "$PAUSE_ALIAS"
    log "tagged $PAUSE_ALIAS"
fi
log "images ready: $BUSYBOX_IMAGE $PAUSE_IMAGE $PAUSE_ALIAS"
