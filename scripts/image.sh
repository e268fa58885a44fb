#!/usr/bin/env bash
# The DaemonSet's image (examples/daemonset.yaml), built from package registries only: no base
# image is pulled.  The root filesystem is Debian bookworm from Debian's registry (mmdebstrap,
# variant essential, plus python3), with this project's wheel and its dependencies from PyPI
# (pip --target, binary wheels only) in /usr/local/lib/python3.11/dist-packages and the static
# shim (scripts/shim.sh) in the package, where `cni2cnm install` finds it, and
# /usr/local/bin/cni2cnm-node (image/cni2cnm-node: the pod's install and preStop steps).  Documentation,
# manual pages and locales are left out.
#
#   scripts/image.sh tar      print the path of the root filesystem tarball (building it first
#                             when it is not cached for this source tree)
#   scripts/image.sh docker [TAG]  `docker import` it into the engine DOCKER_HOST names
#                             (default tag cni2cnm:<version>); prints the tag
#   scripts/image.sh clean    remove the cached tarballs
#
# Cache: C2C_ENGINES_DIR (default <repo>/.engines, git-ignored)/image/rootfs-<key>.tar, the key
# a hash of the project's sources and this script.  C2C_DEBIAN_MIRROR overrides the mirror.
# To push it to a registry: `docker tag cni2cnm:<version> REGISTRY/cni2cnm:<version>` and
# `docker push REGISTRY/cni2cnm:<version>` (README, "Install on Kubernetes").
# Only the answer goes to stdout; progress and errors go to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${C2C_ENGINES_DIR:-$ROOT/.engines}
IMAGE_DIR=$CACHE/image
SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SITE=usr/local/lib/python3.11/dist-packages
PROG=image.sh
USAGE="{tar|docker [TAG]|clean}"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version() { sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/cni2cnm/__init__.py"; }

key() {  # a hash of what goes into the image
    (cd "$ROOT" && git ls-files -z cni2cnm shim image pyproject.toml scripts/image.sh scripts/shim.sh \
        | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# The project and its dependencies, as the image's Python 3.11 imports them, in $1/$SITE.
python_tree() {  # dir
    local dir=$1 py=${C2C_PYTHON:-$ROOT/.venv/bin/python}
    "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
        || die "$py is not Python 3.11 (bookworm's python3): run scripts/bootstrap.sh"
    "$py" -m pip wheel -q --no-deps -w "$dir/wheel" "$ROOT" >&2
    "$py" -m pip install -q --no-warn-script-location --only-binary=:all: \
        --target "$dir/$SITE" "$dir"/wheel/*.whl >&2
    rm -rf "$dir/wheel" "$dir/$SITE/bin"
    bash "$ROOT/scripts/shim.sh" "$dir/$SITE/cni2cnm/_shim/cni2cnm-shim" >/dev/null
    mkdir -p "$dir/usr/local/bin"
    printf '#!/bin/sh\nexec /usr/bin/python3 -I -m cni2cnm "$@"\n' >"$dir/usr/local/bin/cni2cnm"
    install -m 0755 "$ROOT/image/cni2cnm-node" "$dir/usr/local/bin/cni2cnm-node"
    chmod 0755 "$dir/usr/local/bin/cni2cnm"
}

build() {  # out-tar
    local out=$1 work mirror t0
    t0=$(date +%s)
    command -v mmdebstrap >/dev/null || die "mmdebstrap is needed (scripts/bootstrap.sh installs it)"
    mirror=$(debian_mirror)
    work=$(mktemp -d "$IMAGE_DIR/.build.XXXXXX")
    # shellcheck disable=SC2064  # expand now
    trap "rm -rf '$work'" EXIT
    python_tree "$work/overlay"
    log "mmdebstrap $SUITE (essential + python3) from $mirror"
    nice -n 10 mmdebstrap --quiet --variant=essential --include=python3 \
        --keyring="$KEYRING" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook="cp -a '$work/overlay/.' \"\$1/\"" \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
        --customize-hook='chroot "$1" /usr/bin/python3 -I -c "import cni2cnm.cli, cni2cnm.daemon.process, cni2cnm.plugin.handlers, prometheus_client"' \
        "$SUITE" "$work/rootfs.tar" "$mirror" >&2 || die "mmdebstrap failed"
    mv "$work/rootfs.tar" "$out"
    rm -rf "$work"
    trap - EXIT
    log "$out: $(du -m "$out" | cut -f1) MB in $(( $(date +%s) - t0 )) s"
}

tarball() {
    local out
    mkdir -p "$IMAGE_DIR"
    out=$IMAGE_DIR/rootfs-$(key).tar
    if [ ! -s "$out" ]; then
        [ "$(id -u)" = 0 ] || die "must run as root to build the image"
        exec 8>"$IMAGE_DIR/.lock"
        flock 8
        if [ ! -s "$out" ]; then
            rm -f "$IMAGE_DIR"/rootfs-*.tar
            build "$out"
        fi
        exec 8>&-
    fi
    echo "$out"
}

docker_import() {  # [tag]
    local tag=${1:-cni2cnm:$(version)} tar
    tar=$(tarball)
    docker import \
        -c 'ENTRYPOINT ["/usr/local/bin/cni2cnm"]' -c 'CMD ["serve"]' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tar" "$tag" >&2 || die "docker import of $tar failed"
    echo "$tag"
}

[ $# -ge 1 ] || usage
case $1 in
    tar) [ $# -eq 1 ] || usage; tarball ;;
    docker) [ $# -le 2 ] || usage; docker_import "${2:-}" ;;
    clean) rm -rf "$IMAGE_DIR" ;;
    *) usage ;;
esac
