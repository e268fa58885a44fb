#!/usr/bin/env bash
# The Docker engines the project tests on, selected by C2C_ENGINE (default 20.10).
#
#   scripts/engine.sh bin     [ENGINE]   print the directory to put first on PATH for dockerd
#                                        (fetching the engine first when it is not cached)
#   scripts/engine.sh fetch   [ENGINE]   get the engine into the cache (nothing if present)
#   scripts/engine.sh version [ENGINE]   print dockerd --version of the engine
#   scripts/engine.sh clean   [ENGINE]   remove the cached engine (and the private apt state)
#
# Engines:
#   20.10  bookworm's docker.io (installed by scripts/bootstrap.sh): /usr/sbin, nothing fetched.
#   28     Debian unstable's docker.io 28.x (28.5.2 when written), from Debian's registry only:
#          `apt-get download` through a private sources list (the Debian mirror the system's own
#          apt sources name, suites sid and testing) with private list and cache directories, then
#          `dpkg-deb -x`.  Nothing is installed system-wide and no system package changes.  Only
#          dockerd, docker-proxy and docker-init (a link to bookworm's tini-static) are taken:
#          bookworm's containerd 1.6 and runc 1.1 stay (unstable's runc needs a newer glibc).
#
# Cache: C2C_ENGINES_DIR (default <repo>/.engines, git-ignored):
#   .engines/28/bin/{dockerd,docker-proxy,docker-init}  what goes first on PATH
#   .engines/28/root/                                   the unpacked package
#   .engines/28/version                                 the Debian package version
#   .engines/apt/                                       the private sources list, lists, cache
# Environment: C2C_DEBIAN_MIRROR overrides the mirror taken from the system's apt sources.
# Only the answer goes to stdout; progress and errors go to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${C2C_ENGINES_DIR:-$ROOT/.engines}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SUITES="sid testing"

PROG=engine.sh
USAGE="{bin|fetch|version|clean} [20.10|28]"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 1 ] && [ $# -le 2 ] || usage
cmd=$1
ENGINE=${2:-${C2C_ENGINE:-20.10}}
case $ENGINE in
    20.10 | 28) ;;
    *) die "unknown engine '$ENGINE' (known: 20.10, 28)" ;;
esac

# The major (28) or major.minor (20.10) a dockerd --version line must start with.
version_ok() {  # "Docker version 28.5.2+dfsg4, build ..."
    case $1 in
        "Docker version $ENGINE."*) return 0 ;;
    esac
    return 1
}

# ---- 20.10: the system's ------------------------------------------------------------------

system_bin() {
    local d
    d=$(command -v dockerd 2>/dev/null) || die "dockerd not found (run scripts/bootstrap.sh)"
    d=$(dirname "$d")
    version_ok "$("$d/dockerd" --version 2>/dev/null)" \
        || die "the system's dockerd is '$("$d/dockerd" --version 2>&1)', not $ENGINE"
    echo "$d"
}

# ---- 28: Debian unstable's, cached -------------------------------------------------------

EDIR=$CACHE/$ENGINE
APT=$CACHE/apt

cached() {
    [ -x "$EDIR/bin/dockerd" ] && [ -x "$EDIR/bin/docker-proxy" ] \
        && version_ok "$("$EDIR/bin/dockerd" --version 2>/dev/null)"
}

fetch_debian() {
    local mirror s ver deb t0
    t0=$(date +%s)
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
        || die "apt-get and dpkg-deb are needed"
    [ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
    [ -x /usr/bin/tini-static ] || die "/usr/bin/tini-static missing (apt-get install tini)"
    mirror=$(debian_mirror)
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
    for s in $SUITES; do
        echo "deb [signed-by=$KEYRING] $mirror $s main"
    done >"$APT/sources.list"
    log "fetching docker.io $ENGINE.x from $mirror ($SUITES) into $EDIR"
    aptq apt-get update >&2 || die "apt-get update of the private sources failed"
    # The newest docker.io of this major that the suites offer.
    ver=$(aptq apt-cache madison docker.io \
        | awk -F'|' '{gsub(/ /, "", $2); print $2}' \
        | grep -E "^$(printf '%s' "$ENGINE" | sed 's/\./\\./g')\." | sort -V -r | head -n1 || true)
    [ -n "$ver" ] || die "Debian's $SUITES offer no docker.io $ENGINE.x (apt-cache madison:" \
        "$(aptq apt-cache madison docker.io 2>&1 | awk -F'|' '{print $2}' | tr -d ' ' \
            | tr '\n' ' '))"
    local work
    rm -rf "$CACHE"/.fetch.*  # of a fetch that died (we hold the lock)
    work=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    (cd "$work" && aptq apt-get download "docker.io=$ver" >&2) \
        || die "apt-get download docker.io=$ver failed"
    deb=$(ls "$work"/docker.io_*.deb)
    mkdir -p "$work/root" "$work/bin"
    dpkg-deb -x "$deb" "$work/root"
    [ -x "$work/root/usr/sbin/dockerd" ] || die "no usr/sbin/dockerd in $deb"
    [ -x "$work/root/usr/sbin/docker-proxy" ] || die "no usr/sbin/docker-proxy in $deb"
    ln -s ../root/usr/sbin/dockerd "$work/bin/dockerd"
    ln -s ../root/usr/sbin/docker-proxy "$work/bin/docker-proxy"
    # The package's docker-init is a link to unstable's tini-static; bookworm's is the same.
    ln -s /usr/bin/tini-static "$work/bin/docker-init"
    echo "$ver" >"$work/version"
    rm -f "$deb"
    rm -rf "$EDIR"
    mkdir -p "$EDIR"
    mv "$work/root" "$work/bin" "$work/version" "$EDIR/"
    rm -rf "$work" "$APT/lists" "$APT/cache"  # the indexes are only needed to fetch
    cached || die "the unpacked dockerd does not run: $("$EDIR/bin/dockerd" --version 2>&1)"
    log "docker.io $ver ready in $EDIR ($(( $(date +%s) - t0 )) s)"
}

fetch() {
    [ "$ENGINE" != 20.10 ] || return 0
    cached && return 0
    [ "$(id -u)" = 0 ] || die "must run as root to fetch an engine"
    mkdir -p "$CACHE"
    # One fetch at a time (two nodes of a swarm, parallel tests); the loser finds it cached.
    exec 8>"$CACHE/.lock"
    flock 8
    cached || fetch_debian
    exec 8>&-
}

case $cmd in
    bin)
        if [ "$ENGINE" = 20.10 ]; then
            system_bin
        else
            fetch
            echo "$EDIR/bin"
        fi
        ;;
    fetch)
        if [ "$ENGINE" = 20.10 ]; then system_bin >/dev/null; else fetch; fi
        ;;
    version)
        if [ "$ENGINE" = 20.10 ]; then d=$(system_bin); else fetch; d=$EDIR/bin; fi
        "$d/dockerd" --version
        ;;
    clean)
        [ "$ENGINE" = 20.10 ] || rm -rf "$EDIR"
        rm -rf "$APT"
        ;;
    *) usage ;;
esac
