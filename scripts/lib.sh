# shellcheck shell=bash
# Shell helpers shared by the scripts (sourced after they set PROG and USAGE, the arguments
# their usage line names).

log() { echo "$PROG: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { echo "usage: $0 $USAGE" >&2; exit 2; }

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

# The arguments COMMAND DIR of scripts/dockerd.sh and scripts/swarm.sh as $cmd and $DIR (absolute,
# symlink-free; made when COMMAND is one of CREATING): as root only, and DIR short enough for
# the unix sockets below it (their paths are limited to 108 bytes).
command_and_dir() {  # creating max-length command dir (CREATING: commands, space-separated)
    local creating=$1 max=$2
    shift 2
    { [ $# -eq 2 ] && [ -n "$2" ]; } || usage
    cmd=$1
    [ "$(id -u)" = 0 ] || die "must run as root"
    case " $creating " in
        *" $cmd "*) DIR=$(resolve_dir "$2" create) ;;
        *) DIR=$(resolve_dir "$2") ;;
    esac
    # Everything below DIR is ours to kill, unmount and remove: never a system directory.
    case $DIR in
        / | /tmp | /root | /var | /var/lib | /var/run | /run | /home | /etc | /usr | /opt | /srv)
            die "refusing DIR '$DIR'" ;;
    esac
    if [ ${#DIR} -gt "$max" ]; then
        die "DIR '$DIR' is too long (${#DIR} chars); unix socket paths are limited to 108 bytes"
    fi
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

# ---- a dockerd of a directory's own (scripts/dockerd.sh: one; scripts/swarm.sh: one a node) ----
# Its directory D holds data/ (data-root), exec/ (exec-root), docker.sock, dockerd.log,
# dockerd.pid (ours: dockerd deletes its own pidfile, docker.pid, on exit) and daemon.json (empty:
# keeps the host's /etc/docker/daemon.json out).  The caller sets DOCKER (the client),
# START_TIMEOUT and STOP_TIMEOUT (seconds), ENGINE and ENGINE_PATH (engine_name, engine_path)
# and EXTRA_ARGS (read_extra_args).

engine_host() { echo "unix://$1/docker.sock"; }  # dir

engine_answers() {  # dir
    [ -S "$1/docker.sock" ] || return 1
    timeout 10 "$DOCKER" -H "$(engine_host "$1")" info --format '{{.ServerVersion}}' \
        >/dev/null 2>&1
}

# Is PID a running (not zombie) process?
running() {  # pid
    local state
    state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

wait_gone() {  # pid seconds (whole): until PID is gone (or a zombie); non-zero on timeout
    local pid=$1 n=$(( $2 * 10 ))
    while running "$pid"; do
        [ "$n" -gt 0 ] || return 1
        n=$(( n - 1 ))
        sleep 0.1
    done
}

# Is PID the dockerd serving D's socket?
is_dockerd_of() {  # pid dir
    local pid=$1 args
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    args=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    case " $args " in
        *dockerd*" -H $(engine_host "$2") "*) return 0 ;;
    esac
    return 1
}

# The PID of D's dockerd: the one its pidfile names, else (pidfile lost) the one serving its
# socket; non-zero if none runs.
dockerd_pid() {  # dir
    local d=$1 pid=""
    if [ -f "$d/dockerd.pid" ]; then
        pid=$(cat "$d/dockerd.pid" 2>/dev/null || true)
        if is_dockerd_of "$pid" "$d"; then
            echo "$pid"
            return 0
        fi
    fi
    for pid in $(pids_mentioning 'dockerd' "$d"); do
        if is_dockerd_of "$pid" "$d"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Start D's dockerd in the background, in the network namespace NS, with cgroup parent /NS (so
# that leftovers of a killed daemon can be found and killed), the storage driver, --bip and
# --default-address-pool given, and EXTRA_ARGS; with a hostname, in a UTS namespace of its own
# that has that name.  Its PID goes to D/dockerd.pid: setsid (its own session, so a Ctrl-C on
# the caller's terminal does not reach it; in a non-interactive script the background child is
# not a process-group leader, so setsid does not fork), nsenter, unshare and sh all exec.  fd 9
# (a caller's lock) is not passed on.
launch_dockerd() {  # dir netns driver bip pool [hostname]
    local d=$1 ns=$2 driver=$3 bip=$4 pool=$5 name=${6:-}
    local -a uts=()
    if [ -n "$name" ]; then
        # shellcheck disable=SC2016
        uts=(unshare --uts -- sh -c 'hostname "$1" && shift && exec "$@"' sh "$name")
    fi
    mkdir -p "$d/data" "$d/exec"
    rm -f "$d/docker.sock" "$d/docker.pid"
    [ -f "$d/daemon.json" ] || echo '{}' >"$d/daemon.json"
    echo "===== $(date -u '+%Y-%m-%dT%H:%M:%SZ') starting dockerd $ENGINE (storage driver" \
        "$driver, netns $ns${name:+, hostname $name}, PATH $ENGINE_PATH, extra args:" \
        "${EXTRA_ARGS[*]+${EXTRA_ARGS[*]}})" >>"$d/dockerd.log"
    PATH=$ENGINE_PATH setsid nsenter --net="/run/netns/$ns" ${uts[@]+"${uts[@]}"} dockerd \
        --config-file "$d/daemon.json" \
        --data-root "$d/data" \
        --exec-root "$d/exec" \
        --pidfile "$d/docker.pid" \
        -H "$(engine_host "$d")" \
        --storage-driver "$driver" \
        --bip "$bip" \
        --default-address-pool "$pool" \
        --cgroup-parent "/$ns" \
        ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"} \
        </dev/null >>"$d/dockerd.log" 2>&1 9>&- &
    echo "$!" >"$d/dockerd.pid"
}

# Wait until D's dockerd (launch_dockerd) answers; non-zero (the daemon killed) if it exits
# or does not answer within START_TIMEOUT seconds.  LABEL names it in the messages.
wait_dockerd() {  # dir label
    local d=$1 label=$2 pid deadline real
    pid=$(cat "$d/dockerd.pid")
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    until engine_answers "$d"; do
        if ! running "$pid"; then
            wait "$pid" 2>/dev/null || true
            log "$label exited during start-up"
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "$label did not answer within ${START_TIMEOUT}s"
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    # Trust dockerd's own pidfile over $! should a wrapper ever fork.
    real=$(cat "$d/docker.pid" 2>/dev/null || true)
    if [ -n "$real" ] && [ "$real" != "$pid" ] && is_dockerd_of "$real" "$d"; then
        echo "$real" >"$d/dockerd.pid"
    fi
}

# SIGTERM D's dockerd, wait STOP_TIMEOUT seconds, SIGKILL.
stop_dockerd() {  # dir label
    local pid
    pid=$(dockerd_pid "$1") || return 0
    log "stopping $2 ($pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "$2 ($pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || log "warning: $2 ($pid) did not die"
    fi
}

# Remove every container of D's engine, if it answers (SIGKILL: busybox sleep ignores SIGTERM,
# and a daemon stopping with running containers waits for each).
remove_containers() {  # dir
    local host ids
    host=$(engine_host "$1")
    engine_answers "$1" || return 0
    ids=$(timeout 20 "$DOCKER" -H "$host" ps -aq 2>/dev/null || true)
    [ -n "$ids" ] || return 0
    log "removing containers of $host: $(echo "$ids" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    timeout 120 "$DOCKER" -H "$host" rm -f $ids >/dev/null 2>&1 \
        || log "warning: docker rm -f failed on $host"
}

# The cgroups with these names (a dockerd's cgroup parent), in every hierarchy (NUL-separated).
cgroups_named() {  # name...
    local name
    for name in "$@"; do
        find /sys/fs/cgroup -maxdepth 3 -type d -name "$name" -print0 2>/dev/null || true
    done
}

# Kill what the dockerds under DIR left behind: dockerd, containerd and shims (their arguments
# name paths under DIR), container processes (in the cgroups named after the netns given, their
# cgroup parents) and anything still in those netns (docker-proxy); then remove those cgroups.
kill_leftovers() {  # dir netns...
    local d=$1 pids p ns
    shift
    pids="$(pids_mentioning 'dockerd' "$d") $(pids_mentioning 'containerd*' "$d")"
    pids="$pids $(cgroups_named "$@" | while IFS= read -r -d '' cg; do
        find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    done)"
    for ns in "$@"; do
        if [ -e "/run/netns/$ns" ]; then
            pids="$pids $(ip netns pids "$ns" 2>/dev/null || true)"
        fi
    done
    pids=$(echo "$pids" | tr ' ' '\n' | grep -E '^[0-9]+$' | sort -u | grep -v -x -e "$$" || true)
    if [ -n "$pids" ]; then
        log "killing leftover processes: $(echo "$pids" | tr '\n' ' ')"
        for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
        for p in $pids; do wait_gone "$p" 5 || log "warning: $p did not die"; done
    fi
    cgroups_named "$@" | while IFS= read -r -d '' cg; do
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

delete_netns() {  # name...
    local ns
    for ns in "$@"; do
        if [ -e "/run/netns/$ns" ]; then
            ip netns delete "$ns" 2>/dev/null || log "warning: could not delete netns $ns"
        fi
    done
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
