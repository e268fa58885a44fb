#!/usr/bin/env bash
# The kubelet the Kubernetes tests (tests/kubelet) run: v1.20.2, built from Debian's registry.
#
#   scripts/kubelet.sh bin      print the path of the kubelet binary (building it first when it
#                               is not cached)
#   scripts/kubelet.sh fetch    build the kubelet into the cache (nothing if present)
#   scripts/kubelet.sh version  print kubelet --version
#   scripts/kubelet.sh clean    remove the cached kubelet (and the private apt state)
#
# No registry the project reaches ships a kubelet binary.  Debian bookworm's source package
# `kubernetes` (1.20.5+really1.20.2-1.1+deb12u1) carries the upstream v1.20.2 tree with its
# vendor/ directory; it is built offline (GOPROXY=off, -mod=vendor) with bookworm's Go 1.19
# (packages golang-1.19-go and golang-1.19-src, unpacked, never installed).  Two changes let a
# Go newer than 1.15 build and run that tree:
#   - vendor/github.com/modern-go/reflect2 1.0.1 crashes at run time on Go >= 1.18: it is
#     replaced by bookworm's golang-github-modern-go-reflect2-dev (1.0.2), and go.mod's replace
#     block and vendor/modules.txt say 1.0.2;
#   - Go 1.15's vendor/modules.txt lists unversioned replacements (`# path => path version`)
#     among the modules; newer Go wants them at the end of the file.
# Everything comes from Debian's registry through a private sources list (the mirror of the
# system's own apt sources, suite bookworm, deb and deb-src) with private list and cache
# directories; nothing is installed system-wide.  A cold build takes about 5 minutes on 2 cores
# (run with nice); the sources and Go are removed afterwards, only the binary is kept.
#
# Cache: C2C_ENGINES_DIR (default <repo>/.engines, git-ignored):
#   .engines/kubelet/bin/kubelet     the binary
#   .engines/kubelet/version         the Debian source package version it was built from
#   .engines/apt-kubelet/            the private sources list (lists and cache only while fetching)
# Environment: C2C_DEBIAN_MIRROR overrides the mirror taken from the system's apt sources;
# C2C_GOCACHE keeps Go's build cache there (a rebuild then takes seconds) instead of a
# temporary directory.
# Only the answer goes to stdout; progress and errors go to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${C2C_ENGINES_DIR:-$ROOT/.engines}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SUITE=bookworm
SOURCE_PACKAGE=kubernetes
GO_PACKAGES="golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev"
GO_ROOT_IN_DEB=usr/lib/go-1.19
REFLECT2_IN_DEB=usr/share/gocode/src/github.com/modern-go/reflect2
REFLECT2_OLD=v1.0.1
REFLECT2_NEW=v1.0.2
KUBE_VERSION=v1.20.2

PROG=kubelet.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KDIR=$CACHE/kubelet
APT=$CACHE/apt-kubelet
KUBELET=$KDIR/bin/kubelet

usage() {
    echo "usage: $0 {bin|fetch|version|clean}" >&2
    exit 2
}

cached() {
    [ -x "$KUBELET" ] && "$KUBELET" --version 2>/dev/null | grep -q "^Kubernetes $KUBE_VERSION\$"
}

# The tree as Go 1.19 accepts it: reflect2 1.0.2 vendored, unversioned replacements last.
patch_tree() {  # src-dir unpacked-debs-dir
    local src=$1 debs=$2 mods=$1/vendor/modules.txt
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -a "$debs/$REFLECT2_IN_DEB" "$src/vendor/github.com/modern-go/reflect2"
    sed -i "s#^\(\tgithub.com/modern-go/reflect2 => github.com/modern-go/reflect2\) $REFLECT2_OLD\$#\1 $REFLECT2_NEW#" \
        "$src/go.mod"
    sed -i "s#^\(\# github.com/modern-go/reflect2.*\) $REFLECT2_OLD\$#\1 $REFLECT2_NEW#" "$mods"
    sed -i "s#^\(\# github.com/modern-go/reflect2\) $REFLECT2_OLD #\1 $REFLECT2_NEW #" "$mods"
    grep -q "reflect2 $REFLECT2_NEW\$" "$src/go.mod" || die "go.mod: reflect2 replace not found"
    [ "$(grep -c "reflect2.*$REFLECT2_OLD" "$mods")" = 0 ] \
        || die "vendor/modules.txt still names reflect2 $REFLECT2_OLD"
    # `# path => path version` (no version on the left) records go to the end.
    awk '/^# [^ ]+ => / {tail[n++] = $0; next} {print} END {for (i = 0; i < n; i++) print tail[i]}' \
        "$mods" >"$mods.new"
    mv "$mods.new" "$mods"
}

build() {  # src-dir go-root out
    local src=$1 goroot=$2 out=$3 gocache=${C2C_GOCACHE:-$4/gocache} ld
    ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=20"
    ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
    (cd "$src" && env GOROOT="$goroot" PATH="$goroot/bin:$PATH" GOPATH="$4/gopath" \
        GOCACHE="$gocache" GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=vendor GO111MODULE=on \
        nice -n 10 "$goroot/bin/go" build -trimpath -ldflags "$ld" -o "$out" ./cmd/kubelet) >&2
}

fetch_build() {
    local mirror work ver t0
    t0=$(date +%s)
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
        || die "apt-get and dpkg-deb are needed"
    command -v gcc >/dev/null || die "gcc is needed (scripts/bootstrap.sh installs it)"
    [ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
    mirror=$(debian_mirror)
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
    {
        echo "deb [signed-by=$KEYRING] $mirror $SUITE main"
        echo "deb-src [signed-by=$KEYRING] $mirror $SUITE main"
    } >"$APT/sources.list"
    log "building kubelet $KUBE_VERSION from $mirror $SUITE ($SOURCE_PACKAGE, $GO_PACKAGES)"
    aptq apt-get update >&2 || die "apt-get update of the private sources failed"
    rm -rf "$CACHE"/.kubelet.*  # of a build that died (we hold the lock)
    work=$(mktemp -d "$CACHE/.kubelet.XXXXXX")
    mkdir -p "$work/dl" "$work/debs" "$work/src"
    # shellcheck disable=SC2086  # a list of package names
    (cd "$work/dl" && aptq apt-get download $GO_PACKAGES >&2 \
        && aptq apt-get source --download-only "$SOURCE_PACKAGE" >&2) \
        || die "downloading $GO_PACKAGES and the $SOURCE_PACKAGE source from $mirror failed"
    ver=$(sed -n 's/^Version: //p' "$work"/dl/"$SOURCE_PACKAGE"_*.dsc)
    case $ver in
        *really${KUBE_VERSION#v}-*) ;;
        *) die "Debian's $SUITE $SOURCE_PACKAGE is $ver, not upstream $KUBE_VERSION" ;;
    esac
    local deb
    for deb in "$work"/dl/*.deb; do dpkg-deb -x "$deb" "$work/debs"; done
    tar -xzf "$work"/dl/"$SOURCE_PACKAGE"_*.orig.tar.gz -C "$work/src" --strip-components=1
    rm -rf "$work/dl"
    [ -d "$work/src/vendor" ] || die "the $SOURCE_PACKAGE $ver source has no vendor/"
    patch_tree "$work/src" "$work/debs"
    log "compiling (Go $("$work/debs/$GO_ROOT_IN_DEB/bin/go" env GOVERSION 2>/dev/null))"
    build "$work/src" "$work/debs/$GO_ROOT_IN_DEB" "$work/kubelet" "$work" \
        || die "go build ./cmd/kubelet failed (work tree kept in $work)"
    rm -rf "$KDIR"
    mkdir -p "$KDIR/bin"
    mv "$work/kubelet" "$KUBELET"
    echo "$ver" >"$KDIR/version"
    chmod -R u+w "$work" 2>/dev/null || true  # Go's module cache is read-only
    rm -rf "$work" "$APT/lists" "$APT/cache"
    cached || die "the built kubelet does not run: $("$KUBELET" --version 2>&1)"
    log "kubelet $KUBE_VERSION ($ver) ready in $KDIR ($(( $(date +%s) - t0 )) s)"
}

fetch() {
    cached && return 0
    [ "$(id -u)" = 0 ] || die "must run as root to build the kubelet"
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.kubelet-lock"
    flock 8
    cached || fetch_build
    exec 8>&-
}

[ $# -eq 1 ] || usage
case $1 in
    bin) fetch; echo "$KUBELET" ;;
    fetch) fetch ;;
    version) fetch; "$KUBELET" --version ;;
    clean) rm -rf "$KDIR" "$APT" ;;
    *) usage ;;
esac
