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
USAGE="{start|stop|restart|kill|status} DIR"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command_and_dir "start restart" 70 "$@"

HOST=$(engine_host "$DIR")
NS="c2c-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)"
PIDFILE="$DIR/dockerd.pid"
LOGFILE="$DIR/dockerd.log"

dk() { timeout 20 "$DOCKER" -H "$HOST" "$@"; }

answers() { engine_answers "$DIR"; }

ensure_netns() {
    if [ ! -e "/run/netns/$NS" ]; then
        ip netns add "$NS"
    fi
    ip -n "$NS" link set lo up
    echo "$NS" >"$DIR/netns"
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
    local driver=$1
    ENGINE=$(cat "$DIR/engine")
    read_extra_args "$DIR/extra-args"
    forget_dead_containerd
    launch_dockerd "$DIR" "$NS" "$driver" "$BIP" "$ADDRESS_POOL"
    wait_dockerd "$DIR" "dockerd ($driver)" || return 1
    echo "$driver" >"$DIR/storage-driver"
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
    if pid=$(dockerd_pid "$DIR"); then
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

do_stop() {
    remove_containers "$DIR"
    if answers; then
        dk network prune -f >/dev/null 2>&1 || log "warning: docker network prune failed"
    fi
    stop_dockerd "$DIR" dockerd
    kill_leftovers "$DIR" "$NS"
    unmount_under "$DIR"
    delete_netns "$NS"
    rm -f "$PIDFILE" "$DIR/docker.sock" "$DIR/docker.pid"
    log "stopped engine of $DIR"
}

do_restart() {
    local t0
    t0=$(date +%s.%N)
    stop_dockerd "$DIR" dockerd
    do_start
    log "restart took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
}

do_kill() {
    local pid
    if pid=$(dockerd_pid "$DIR"); then
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
