#!/usr/bin/env bash
# Install what cni2cnm's tests need on a Debian 12 machine (run as root), idempotently:
#   - Debian packages (apt-get only when one is missing),
#   - a virtualenv at .venv with the project installed editable with its [test] extras, the test
#     and lint tools pinned by constraints/tools.txt (pip only re-runs when pyproject.toml or a
#     constraints file is newer than .venv/.c2c-installed, or the constraints files changed).
# C2C_VENV names another virtualenv, C2C_CONSTRAINTS more constraints files (space-separated):
# scripts/floors.sh uses C2C_VENV=.venv-floors C2C_CONSTRAINTS=constraints/floors.txt.
# Progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${C2C_VENV:-$ROOT/.venv}
STAMP="$VENV/.c2c-installed"
read -ra CONSTRAINTS <<<"$ROOT/constraints/tools.txt ${C2C_CONSTRAINTS:-}"

PACKAGES=(
    docker.io busybox-static iproute2 gcc libc6-dev
    python3 python3-venv python3-pip
    containernetworking-plugins podman iptables systemd mmdebstrap
)

log() { echo "bootstrap.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (sudo $0)"
    exit 1
fi

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' services (dockerd, containerd) from being started by the install:
    # the tests run their own engine in a private netns (scripts/dockerd.sh), and a dockerd in
    # the host netns would rewrite the host's iptables and ip_forward.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -q >&2
    apt-get install -y -q "${PACKAGES[@]}" >&2
    if [ -n "$policy" ]; then
        rm -f "$policy"
        trap - EXIT
    fi
else
    log "Debian packages present"
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$VENV is broken; recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV" >&2
    rm -f "$STAMP"
fi

stale() {  # the installation in $VENV is not the one pyproject.toml and the constraints ask for
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${CONSTRAINTS[*]}" ] || return 0
    local f
    for f in "$ROOT/pyproject.toml" "${CONSTRAINTS[@]}"; do
        [ "$f" -nt "$STAMP" ] && return 0
    done
    return 1
}

if stale; then
    log "installing the project into $VENV (pip install -e '.[test]'" \
        "with constraints ${CONSTRAINTS[*]#"$ROOT/"})"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -e '.[test]' "${CONSTRAINTS[@]/#/--constraint=}") >&2
    echo "${CONSTRAINTS[*]}" >"$STAMP"
else
    log "$VENV up to date"
fi
