#!/usr/bin/env bash
# Run a throwaway Docker engine (dockerd) in its own network namespace.
#
#   scripts/dockerd.sh start   DIR   start (or reuse) the engine; prints unix://DIR/docker.sock
#   scripts/dockerd.sh stop    DIR   remove containers and networks, stop the engine, unmount
#                                    everything under DIR, delete the netns (DIR itself is kept)
#   scripts/dockerd.sh restart DIR   stop the daemon only (data, netns kept) and start it again
#   scripts/dockerd.sh kill    DIR   SIGKILL the daemon only (data, netns, shims kept)
#   scripts/dockerd.sh status  DIR   print the host and exit 0 if the engine answers, else exit 1
#
# Everything lives under DIR: data/ (data-root), exec/ (exec-root), docker.sock, dockerd.log,
# dockerd.pid (written by us: dockerd deletes its own pidfile on exit), netns (the netns name),
# storage-driver (the driver that worked, reused by restart), daemon.json (empty: keeps the
# host's /etc/docker/daemon.json out).  Containers get cgroup parent /<netns name>, so leftovers
# of a killed daemon can be found and killed.
#
# Keep DIR short: unix socket paths are limited to 108 bytes.
# Environment: DOCKER (client binary, default: docker on PATH), C2C_STORAGE_DRIVER (force a
# storage driver), C2C_START_TIMEOUT (seconds, default 30), C2C_DOCKERD_ARGS (extra dockerd
# arguments, split on whitespace, e.g. "--live-restore"; saved in DIR/extra-args and reused by
# restart unless given again), C2C_ENGINE (20.10, the default, or 28: the dockerd to run, see
# scripts/engine.sh, which fetches 28 on first use; saved in DIR/engine and reused by restart
# unless given again).  The engine's directory comes first on dockerd's PATH.
#
# Only the engine's host is printed on stdout; all diagnostics go to stderr.
set -euo pipefail

DOCKER=${DOCKER:-docker}
START_TIMEOUT=${C2C_START_TIMEOUT:-30}
STOP_TIMEOUT=15
BIP=10.231.0.1/24
ADDRESS_POOL=base=10.232.0.0/16,size=24

unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH

PROG=dockerd.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    echo "usage: $0 {start|stop|restart|kill|status} DIR" >&2
    exit 2
}

{ [ $# -eq 2 ] && [ -n "$2" ]; } || usage
cmd=$1
[ "$(id -u)" = 0 ] || die "must run as root"
case $cmd in
    start|restart) DIR=$(resolve_dir "$2" create) ;;
    *) DIR=$(resolve_dir "$2") ;;
esac

HOST="unix://$DIR/docker.sock"
NS="c2c-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)"
CGROUP_PARENT="/$NS"
PIDFILE="$DIR/dockerd.pid"
LOGFILE="$DIR/dockerd.log"

if [ ${#DIR} -gt 70 ]; then
    die "DIR '$DIR' is too long (${#DIR} chars); unix socket paths are limited to 108 bytes"
fi

dk() { timeout 20 "$DOCKER" -H "$HOST" "$@"; }

answers() {
    [ -S "$DIR/docker.sock" ] || return 1
    timeout 10 "$DOCKER" -H "$HOST" info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

# Does PID belong to a dockerd of this DIR?
is_our_dockerd() {
    local pid=$1 args
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    args=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    case " $args " in
        *dockerd*" -H $HOST "*) return 0 ;;
    esac
    return 1
}

daemon_pid() {
    local pid=""
    if [ -f "$PIDFILE" ]; then
        pid=$(cat "$PIDFILE" 2>/dev/null || true)
        if is_our_dockerd "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    # Pidfile lost: look for a dockerd serving our socket.
    for pid in $(pids_mentioning 'dockerd' "$DIR"); do
        if is_our_dockerd "$pid"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

wait_gone() {  # pid timeout_seconds
    local pid=$1 deadline=$(( $(date +%s) + $2 ))
    while [ -d "/proc/$pid" ]; do
        # A zombie child of ours counts as gone.
        if [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" = Z ]; then
            return 0
        fi
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

ensure_netns() {
    if [ ! -e "/run/netns/$NS" ]; then
        ip netns add "$NS"
    fi
    ip -n "$NS" link set lo up
    echo "$NS" >"$DIR/netns"
}

# Is PID a running (not zombie) process?
running() {
    local state
    state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# dockerd reuses the managed containerd named in exec/containerd/containerd.pid while that PID
# "exists" (kill -0), and a killed containerd can linger as a zombie until PID 1 reaps it: then
# dockerd waits 15 s for a socket nobody serves and gives up.  Drop the pidfile of a containerd
# that is gone or dying.
forget_dead_containerd() {
    local f="$DIR/exec/containerd/containerd.pid" cpid
    [ -f "$f" ] || return 0
    cpid=$(cat "$f" 2>/dev/null || true)
    if [ -z "$cpid" ] || ! running "$cpid"; then
        rm -f "$f"
    fi
}

# Start dockerd with the given storage driver and wait until it answers.  Returns non-zero
# (daemon killed) when it exits or does not answer in time.
launch() {
    local driver=$1 pid deadline engine
    local -a extra=()
    if [ -s "$DIR/extra-args" ]; then
        read -r -a extra <"$DIR/extra-args"
    fi
    engine=$(cat "$DIR/engine")
    rm -f "$DIR/docker.sock" "$DIR/docker.pid"
    forget_dead_containerd
    mkdir -p "$DIR/data" "$DIR/exec"
    [ -f "$DIR/daemon.json" ] || echo '{}' >"$DIR/daemon.json"
    {
        echo "===== $(date -u '+%Y-%m-%dT%H:%M:%SZ') starting dockerd $engine (storage driver" \
            "$driver, netns $NS, PATH $ENGINE_PATH, extra args: ${extra[*]+${extra[*]}})"
    } >>"$LOGFILE"
    # setsid: own session, so a Ctrl-C on the caller's terminal does not reach the daemon.
    # In a non-interactive script the background child is not a process-group leader, so
    # setsid does not fork and $! is the dockerd PID (nsenter execs too).
    PATH=$ENGINE_PATH setsid nsenter --net="/run/netns/$NS" dockerd \
        --config-file "$DIR/daemon.json" \
        --data-root "$DIR/data" \
        --exec-root "$DIR/exec" \
        --pidfile "$DIR/docker.pid" \
        -H "$HOST" \
        --storage-driver "$driver" \
        --bip "$BIP" \
        --default-address-pool "$ADDRESS_POOL" \
        --cgroup-parent "$CGROUP_PARENT" \
        ${extra[@]+"${extra[@]}"} \
        </dev/null >>"$LOGFILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    while :; do
        if ! running "$pid"; then
            wait "$pid" 2>/dev/null || true
            log "dockerd ($driver) exited during start-up"
            return 1
        fi
        if answers; then
            break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "dockerd ($driver) did not answer within ${START_TIMEOUT}s"
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
    # Trust dockerd's own pidfile over $! should a wrapper ever fork.
    local real
    real=$(cat "$DIR/docker.pid" 2>/dev/null || true)
    if [ -n "$real" ] && [ "$real" != "$pid" ] && is_our_dockerd "$real"; then
        echo "$real" >"$PIDFILE"
    fi
    echo "$driver" >"$DIR/storage-driver"
    return 0
}

do_start() {
    local t0 pid driver forced=""
    t0=$(date +%s.%N)
    if answers; then
        log "engine $(cat "$DIR/engine" 2>/dev/null || echo '?') already answers at $HOST"
        if [ -n "${C2C_ENGINE:-}" ] && [ "$(cat "$DIR/engine" 2>/dev/null)" != "$C2C_ENGINE" ]; then
            log "warning: C2C_ENGINE=$C2C_ENGINE asked; stop the engine of $DIR to switch"
        fi
        echo "$HOST"
        return 0
    fi
    if pid=$(daemon_pid); then
        log "dockerd $pid of $DIR is running but does not answer; waiting"
        local deadline=$(( $(date +%s) + START_TIMEOUT ))
        while [ "$(date +%s)" -lt "$deadline" ] && running "$pid"; do
            if answers; then
                echo "$HOST"
                return 0
            fi
            sleep 0.2
        done
        log "dockerd $pid does not answer; killing it and starting afresh"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || true
    fi
    engine_name "$DIR/engine" >"$DIR/engine.new"
    mv "$DIR/engine.new" "$DIR/engine"
    ENGINE_PATH=$(engine_path "$(cat "$DIR/engine")")
    if [ -n "${C2C_DOCKERD_ARGS+set}" ]; then
        printf '%s\n' "$C2C_DOCKERD_ARGS" >"$DIR/extra-args"
    fi
    command -v "$DOCKER" >/dev/null || die "docker client '$DOCKER' not found"
    ensure_netns

    if [ -n "${C2C_STORAGE_DRIVER:-}" ]; then
        driver=$C2C_STORAGE_DRIVER
        forced=1
    elif [ -s "$DIR/storage-driver" ]; then
        driver=$(cat "$DIR/storage-driver")
        forced=1  # existing data: do not switch drivers under it
    else
        driver=overlay2
    fi

    if ! launch "$driver"; then
        if [ -z "$forced" ] && [ "$driver" = overlay2 ]; then
            log "overlay2 failed; last log lines:"
            tail -n 15 "$LOGFILE" >&2 || true
            log "retrying with the vfs storage driver"
            unmount_under "$DIR/data"
            driver=vfs
            if ! launch "$driver"; then
                log "dockerd failed to start; last log lines of $LOGFILE:"
                tail -n 40 "$LOGFILE" >&2 || true
                exit 1
            fi
        else
            log "dockerd failed to start; last log lines of $LOGFILE:"
            tail -n 40 "$LOGFILE" >&2 || true
            exit 1
        fi
    fi
    log "engine $(cat "$DIR/engine") up at $HOST (pid $(cat "$PIDFILE"), storage $driver, netns $NS," \
        "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s)"
    echo "$HOST"
}

# SIGTERM the daemon, wait, SIGKILL.
stop_daemon() {
    local pid
    if ! pid=$(daemon_pid); then
        return 0
    fi
    log "stopping dockerd $pid"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "dockerd $pid still running after ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || log "warning: dockerd $pid did not die"
    fi
}

# The cgroups named after our cgroup parent, in every hierarchy (NUL-separated).
our_cgroups() {
    find /sys/fs/cgroup -maxdepth 3 -type d -name "$NS" -print0 2>/dev/null || true
}

# Kill whatever the daemon left behind: containerd, shims, container processes, and anything
# still in the engine's netns (docker-proxy).
kill_leftovers() {
    local pids p
    # containerd (managed by dockerd) and containerd-shim*: their command lines name DIR/exec.
    pids=$(pids_mentioning 'containerd*' "$DIR")
    # Processes of containers: they sit in cgroups below our cgroup parent.
    pids="$pids $(our_cgroups | while IFS= read -r -d '' cg; do
        find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    done)"
    # Anything still inside the engine's netns (only once the daemon is gone).
    if [ -e "/run/netns/$NS" ]; then
        pids="$pids $(ip netns pids "$NS" 2>/dev/null || true)"
    fi
    pids=$(echo "$pids" | tr ' ' '\n' | grep -E '^[0-9]+$' | sort -u | grep -v -x -e "$$" || true)
    if [ -n "$pids" ]; then
        log "killing leftover processes: $(echo "$pids" | tr '\n' ' ')"
        for p in $pids; do
            kill -KILL "$p" 2>/dev/null || true
        done
        for p in $pids; do
            wait_gone "$p" 5 || true
        done
    fi
    # Remove the (now empty) cgroups, deepest first.
    our_cgroups | while IFS= read -r -d '' cg; do
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

do_stop() {
    if answers; then
        local ids
        ids=$(dk ps -aq 2>/dev/null || true)
        if [ -n "$ids" ]; then
            log "removing containers: $(echo "$ids" | tr '\n' ' ')"
            # shellcheck disable=SC2086
            timeout 120 "$DOCKER" -H "$HOST" rm -f $ids >/dev/null 2>&1 \
                || log "warning: docker rm -f failed"
        fi
        dk network prune -f >/dev/null 2>&1 || log "warning: docker network prune failed"
    fi
    stop_daemon
    kill_leftovers
    unmount_under "$DIR"
    if [ -e "/run/netns/$NS" ]; then
        ip netns delete "$NS" 2>/dev/null || log "warning: could not delete netns $NS"
    fi
    rm -f "$PIDFILE" "$DIR/docker.sock" "$DIR/docker.pid"
    log "stopped engine of $DIR"
}

do_restart() {
    local t0
    t0=$(date +%s.%N)
    stop_daemon
    do_start
    log "restart took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
}

do_kill() {
    local pid
    if pid=$(daemon_pid); then
        log "SIGKILL dockerd $pid"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || true
        # Its managed containerd dies with it (parent-death signal); wait for that.
        local p
        for p in $(pids_mentioning 'containerd' "$DIR"); do
            wait_gone "$p" 5 || true
        done
    else
        log "no dockerd running for $DIR"
    fi
}

do_status() {
    if answers; then
        echo "$HOST"
        return 0
    fi
    return 1
}

case $cmd in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_restart ;;
    kill) do_kill ;;
    status) do_status ;;
    *) usage ;;
esac
