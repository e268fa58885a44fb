# shellcheck shell=bash
# Shell helpers shared by scripts/dockerd.sh and scripts/swarm.sh (sourced after they set PROG).

log() { echo "$PROG: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Print DIR ($1) as an absolute, symlink-free path; create it first when $2 is "create". A
# DIR that does not exist is made absolute only (stop, status: nothing can run there).
resolve_dir() {  # dir [create]
    [ "${2:-}" != create ] || mkdir -p "$1"
    if [ -d "$1" ]; then (cd "$1" && pwd -P); else realpath -m "$1"; fi
}

# PIDs of processes whose argv[0] matches the glob $1 and one of whose arguments is a path
# under $2 (no broad name matching: other engines on the host are never touched).
pids_mentioning() {  # glob dir
    local want=$1 under=$2 p a
    local -a argv
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = "$$" ] && continue
        mapfile -d '' -t argv 2>/dev/null <"/proc/$p/cmdline" || continue
        [ ${#argv[@]} -gt 0 ] || continue
        # shellcheck disable=SC2254
        case ${argv[0]##*/} in
            $want) ;;
            *) continue ;;
        esac
        for a in "${argv[@]:1}"; do
            case $a in
                "$under"/* | *="$under"/*)
                    echo "$p"
                    break
                    ;;
            esac
        done
    done
}

# Lazily unmount every mount point at or below $1, deepest first.
unmount_under() {
    local root=$1 m
    # /proc/mounts escapes spaces etc. as octal; our paths have none.
    awk -v root="$root" '$2 == root || index($2, root "/") == 1 {print $2}' /proc/mounts \
        | sort -r -u \
        | while read -r m; do
            umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
        done
}

# The engine to run (C2C_ENGINE: 20.10, the default, or 28; see scripts/engine.sh) and the PATH
# to start its dockerd with: the engine's directory first, so that dockerd finds its own
# docker-proxy and docker-init, and bookworm's containerd and runc after it.
engine_name() {  # [saved-file]: C2C_ENGINE, else the engine saved in the file, else 20.10
    if [ -n "${C2C_ENGINE:-}" ]; then
        echo "$C2C_ENGINE"
    elif [ -n "${1:-}" ] && [ -s "$1" ]; then
        cat "$1"
    else
        echo 20.10
    fi
}

engine_path() {  # engine
    local bin
    bin=$(bash "$(dirname "${BASH_SOURCE[0]}")/engine.sh" bin "$1") \
        || die "engine $1 is not available (scripts/engine.sh bin $1)"
    echo "$bin:$PATH"
}

# C2C_DOCKERD_ARGS (extra dockerd arguments, split on whitespace) as the array EXTRA_ARGS.
read_extra_args() {  # [saved-file]: the file's arguments when C2C_DOCKERD_ARGS is unset
    EXTRA_ARGS=()
    if [ -n "${C2C_DOCKERD_ARGS+set}" ]; then
        read -r -a EXTRA_ARGS <<<"$C2C_DOCKERD_ARGS"
    elif [ -n "${1:-}" ] && [ -s "$1" ]; then
        read -r -a EXTRA_ARGS <"$1"
    fi
}

# ---- Debian's registry through private apt state (scripts/engine.sh, scripts/kubelet.sh) ----

# The Debian mirror the system's own apt sources use for its release (deb822 or one-line
# format, as apt itself parsed them), e.g. http://deb.debian.org/debian/.
debian_mirror() {
    if [ -n "${C2C_DEBIAN_MIRROR:-}" ]; then
        echo "$C2C_DEBIAN_MIRROR"
        return 0
    fi
    local codename uri
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release"
    # shellcheck disable=SC2016  # apt's own $(FIELD) syntax
    uri=$(apt-get indextargets --no-release-info \
            --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' \
        | awk -v rel="$codename" '$1 == "deb" && $2 == rel {print $3; exit}')
    [ -n "$uri" ] || die "no 'deb ... $codename' source in the system's apt sources" \
        "(set C2C_DEBIAN_MIRROR)"
    echo "$uri"
}

aptq() {  # apt-get or apt-cache with the private sources, lists and cache under $APT only
    local tool=$1
    shift
    "$tool" -q \
        -o Dir::Etc::sourcelist="$APT/sources.list" \
        -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$APT/lists" \
        -o Dir::Cache="$APT/cache" \
        -o Acquire::Languages=none \
        -o APT::Sandbox::User=root \
        "$@"
}
