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
USAGE="{bin|fetch|version|clean|cluster|cluster-clean}"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KDIR=$CACHE/kubelet
APT=$CACHE/apt-kubelet
KUBELET=$KDIR/bin/kubelet

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

# Go from the unpacked debs, offline, on the vendored tree.
gocmd() {  # src-dir go-root work-dir go-args...
    local src=$1 goroot=$2 work=$3
    shift 3
    (cd "$src" && env GOROOT="$goroot" PATH="$goroot/bin:$PATH" GOPATH="$work/gopath" \
        GOCACHE="${C2C_GOCACHE:-$work/gocache}" GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=vendor \
        GO111MODULE=on nice -n 10 "$goroot/bin/go" "$@") >&2
}

build() {  # src-dir go-root out work-dir [go build arguments; default ./cmd/kubelet]
    local src=$1 goroot=$2 out=$3 work=$4 ld
    shift 4
    [ $# -gt 0 ] || set -- ./cmd/kubelet
    ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=20"
    ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
    gocmd "$src" "$goroot" "$work" build -trimpath -ldflags "$ld" -o "$out" "$@"
}

# Download the source and Go into a new work directory (printed on stdout), unpack and patch the
# tree in $work/src, Go in $work/debs; the Debian version goes to $work/version.
fetch_tree() {
    local mirror work ver
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
    log "fetching $SOURCE_PACKAGE and Go from $mirror $SUITE ($SOURCE_PACKAGE, $GO_PACKAGES ${EXTRA_DEBS:-})"
    aptq apt-get update >&2 || die "apt-get update of the private sources failed"
    rm -rf "$CACHE"/.kubelet.*  # of a build that died (we hold the lock)
    work=$(mktemp -d "$CACHE/.kubelet.XXXXXX")
    mkdir -p "$work/dl" "$work/debs" "$work/src"
    # shellcheck disable=SC2086  # a list of package names
    (cd "$work/dl" && aptq apt-get download $GO_PACKAGES ${EXTRA_DEBS:-} >&2 \
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
    echo "$ver" >"$work/version"
    echo "$work"
}

drop_tree() {  # work-dir
    chmod -R u+w "$1" 2>/dev/null || true  # Go's module cache is read-only
    rm -rf "$1" "$APT/lists" "$APT/cache"
}

fetch_build() {
    local work ver t0
    t0=$(date +%s)
    work=$(fetch_tree)
    ver=$(cat "$work/version")
    log "compiling (Go $("$work/debs/$GO_ROOT_IN_DEB/bin/go" env GOVERSION 2>/dev/null))"
    build "$work/src" "$work/debs/$GO_ROOT_IN_DEB" "$work/kubelet" "$work" \
        || die "go build ./cmd/kubelet failed (work tree kept in $work)"
    rm -rf "$KDIR"
    mkdir -p "$KDIR/bin"
    mv "$work/kubelet" "$KUBELET"
    echo "$ver" >"$KDIR/version"
    drop_tree "$work"
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

# ---- A whole one-node cluster (tests/cluster): the control plane from the same tree ----------
#   scripts/kubelet.sh cluster      print the directory holding kube-apiserver,
#                                   kube-controller-manager, kube-scheduler, kubectl, etcd and
#                                   kubelet (building them first when they are not cached)
#   scripts/kubelet.sh cluster-clean  remove them
# The four Kubernetes binaries (and the kubelet, when it is not cached yet) come from one
# `go build` of the same patched tree.  Debian's tarball lacks the generated
# pkg/generated/openapi/zz_generated.openapi.go that kube-apiserver needs: the vendored
# openapi-gen makes it (GOPATH mode) from the packages carrying a `+k8s:openapi-gen=` tag, and
# `go build -overlay` adds it without changing the tree.  etcd is bookworm's etcd-server .deb.
# Cache: .engines/cluster/bin/, .engines/cluster/version.
CLUSTER_DIR=$CACHE/cluster
CLUSTER_BINS="kube-apiserver kube-controller-manager kube-scheduler kubectl"
ETCD_DEB=etcd-server
ETCD_IN_DEB=usr/bin/etcd
OPENAPI_PKG=k8s.io/kubernetes/pkg/generated/openapi

cluster_cached() {
    local b
    for b in $CLUSTER_BINS etcd kubelet; do [ -x "$CLUSTER_DIR/bin/$b" ] || return 1; done
    "$CLUSTER_DIR/bin/kube-apiserver" --version 2>/dev/null | grep -q "^Kubernetes $KUBE_VERSION\$"
}

# The packages openapi-gen reads: every directory of the tree (staging as vendor/k8s.io/...)
# with a Go file carrying the tag, as upstream's build/root/Makefile.generated_files finds them.
openapi_dirs() {  # src-dir
    (cd "$1" && grep -rl --include='*.go' -e '+k8s:openapi-gen=' pkg cmd staging/src vendor \
        | grep -v -e '^vendor/k8s.io/' -e '_test\.go$' -e '/testdata/' \
        | xargs -n1 dirname | sort -u \
        | sed -e 's#^staging/src/#k8s.io/kubernetes/vendor/#' \
              -e 's#^vendor/#k8s.io/kubernetes/vendor/#' \
              -e 's#^\(pkg\|cmd\)/#k8s.io/kubernetes/\1/#' \
        | paste -sd,)
}

# pkg/generated/openapi/zz_generated.openapi.go in $work/openapi, and the overlay naming it.
gen_openapi() {  # work-dir
    local work=$1 src=$1/src goroot=$1/debs/$GO_ROOT_IN_DEB gp=$1/gopath-openapi
    build "$src" "$goroot" "$work/openapi-gen" "$work" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen \
        || die "building openapi-gen failed (work tree kept in $work)"
    mkdir -p "$gp/src/k8s.io" "$work/openapi"
    ln -sfn "$src" "$gp/src/k8s.io/kubernetes"
    (cd "$gp/src/k8s.io/kubernetes" && env GOROOT="$goroot" PATH="$goroot/bin:$PATH" GOPATH="$gp" \
        GO111MODULE=off GOFLAGS= nice -n 10 "$work/openapi-gen" --logtostderr \
        --input-dirs "$(openapi_dirs "$src")" --output-package "$OPENAPI_PKG" \
        -O zz_generated.openapi --output-base "$work/openapi" \
        --go-header-file hack/boilerplate/boilerplate.generatego.txt \
        --report-filename "$work/openapi-violations.txt") >&2 \
        || die "openapi-gen failed (work tree kept in $work)"
    printf '{"Replace": {"%s": "%s"}}\n' \
        "$src/pkg/generated/openapi/zz_generated.openapi.go" \
        "$work/openapi/$OPENAPI_PKG/zz_generated.openapi.go" >"$work/overlay.json"
}

cluster_build() {
    local work ver t0 b pkgs=()
    t0=$(date +%s)
    work=$(EXTRA_DEBS=$ETCD_DEB fetch_tree)
    ver=$(cat "$work/version")
    gen_openapi "$work"
    for b in $CLUSTER_BINS; do pkgs+=("./cmd/$b"); done
    cached || pkgs+=(./cmd/kubelet)
    log "compiling ${pkgs[*]}"
    mkdir -p "$work/out"
    build "$work/src" "$work/debs/$GO_ROOT_IN_DEB" "$work/out/" "$work" \
        -overlay "$work/overlay.json" "${pkgs[@]}" \
        || die "go build ${pkgs[*]} failed (work tree kept in $work)"
    if [ -x "$work/out/kubelet" ]; then
        rm -rf "$KDIR"
        mkdir -p "$KDIR/bin"
        mv "$work/out/kubelet" "$KUBELET"
        echo "$ver" >"$KDIR/version"
    fi
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR/bin"
    mv "$work"/out/* "$CLUSTER_DIR/bin/"
    cp "$work/debs/$ETCD_IN_DEB" "$CLUSTER_DIR/bin/etcd"
    ln -s "$KUBELET" "$CLUSTER_DIR/bin/kubelet"
    echo "$ver" >"$CLUSTER_DIR/version"
    drop_tree "$work"
    cluster_cached || die "the built control plane does not run"
    log "cluster binaries $KUBE_VERSION ($ver) ready in $CLUSTER_DIR ($(( $(date +%s) - t0 )) s)"
}

cluster_fetch() {
    cluster_cached && return 0
    [ "$(id -u)" = 0 ] || die "must run as root to build the cluster's binaries"
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.kubelet-lock"
    flock 8
    cluster_cached || cluster_build
    exec 8>&-
}
# ---- end of the cluster block -----------------------------------------------------------------

[ $# -eq 1 ] || usage
case $1 in
    bin) fetch; echo "$KUBELET" ;;
    fetch) fetch ;;
    version) fetch; "$KUBELET" --version ;;
    clean) rm -rf "$KDIR" "$APT" ;;
    cluster) cluster_fetch; echo "$CLUSTER_DIR/bin" ;;
    cluster-clean) rm -rf "$CLUSTER_DIR" ;;
    *) usage ;;
esac
