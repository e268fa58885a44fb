#!/usr/bin/env bash
# Two Docker nodes on one machine, joined by Docker Swarm, with an attachable overlay network.
#
#   scripts/swarm.sh up     DIR   start both nodes, form the swarm, create the overlay, build the
#                                 test images in both nodes; prints the facts (below) on stdout
#   scripts/swarm.sh down   DIR   kill everything of DIR by PID (containers, shims, containerd,
#                                 dockerd), unmount everything under DIR, delete both netns (and
#                                 with them the veth pair) and the nodes' data; safe to repeat
#   scripts/swarm.sh status DIR   print the facts and exit 0 if both nodes answer and the swarm is
#                                 formed, else exit 1
#
# Layout (the nodes are "a", the manager, and "b", a worker):
#   netns  c2s-<hash of DIR>-a / -b, joined by a veth pair: eth0 10.120.0.1/24 in a, eth0
#          10.120.0.2/24 in b (never an interface in the host netns).
#   DIR/a, DIR/b      data/ exec/ docker.sock dockerd.log dockerd.pid (ours: dockerd deletes its
#                     own pidfile) daemon.json (empty: keeps /etc/docker/daemon.json out)
#   DIR/swarm.env     the facts printed by `up` (removed by `down`)
# Each dockerd runs with `nsenter --net` in its netns and `unshare --uts` (hostname = node name),
# cgroup parent /<netns name>, its own --bip and --default-address-pool.
#
# Facts (stdout of up/status, one KEY=VALUE a line, also in DIR/swarm.env):
#   NODE_A_HOST NODE_B_HOST (unix://...), NODE_A_NAME NODE_B_NAME (hostnames = swarm node names),
#   NODE_A_ADDR NODE_B_ADDR, NODE_A_NETNS NODE_B_NETNS, NODE_A_PID NODE_B_PID, NODE_A_ID
#   NODE_B_ID (swarm node IDs), OVERLAY, OVERLAY_ID, OVERLAY_SUBNET, SWARM_POOL
#
# Environment (defaults in brackets):
#   C2S_OVERLAY [c2c-ovl]  C2S_OVERLAY_SUBNET [10.121.7.0/24]
#   C2S_SWARM_POOL [10.126.0.0/16] (swarm --default-addr-pool, /24 networks: ingress lives here)
#   C2S_POOL_A [base=10.124.0.0/16,size=24]  C2S_POOL_B [base=10.125.0.0/16,size=24]
#                                       (local --default-address-pool: docker_gwbridge etc.)
#   C2S_BIP_A [10.122.0.1/24]  C2S_BIP_B [10.122.1.1/24]
#   C2S_IMAGES [1] (0: do not build the test images)   C2S_START_TIMEOUT [60]
#   C2S_STORAGE_DRIVER [overlay2, vfs as fallback]      DOCKER [docker]
#   C2S_STOP_TIMEOUT [3] (seconds between SIGTERM and SIGKILL of a dockerd in down)
#   C2C_ENGINE [20.10] (or 28: the dockerd both nodes run, see scripts/engine.sh; its directory
#                       comes first on dockerd's PATH)
#   C2C_DOCKERD_ARGS [] (extra arguments for both dockerds, split on whitespace, as for
#                       scripts/dockerd.sh)
#
# Keep DIR short: DIR/a/docker.sock must stay below 108 bytes.  Diagnostics go to stderr.
set -euo pipefail

DOCKER=${DOCKER:-docker}
START_TIMEOUT=${C2S_START_TIMEOUT:-60}
# A swarm dockerd's graceful stop can wait 5 s more for a gossip "node leave" broadcast nobody
# receives (the other node is stopping too).  The nodes' state is deleted anyway: SIGKILL soon.
STOP_TIMEOUT=${C2S_STOP_TIMEOUT:-3}
OVERLAY=${C2S_OVERLAY:-c2c-ovl}
OVERLAY_SUBNET=${C2S_OVERLAY_SUBNET:-10.121.7.0/24}
SWARM_POOL=${C2S_SWARM_POOL:-10.126.0.0/16}
POOL_A=${C2S_POOL_A:-base=10.124.0.0/16,size=24}
POOL_B=${C2S_POOL_B:-base=10.125.0.0/16,size=24}
BIP_A=${C2S_BIP_A:-10.122.0.1/24}
BIP_B=${C2S_BIP_B:-10.122.1.1/24}
ADDR_A=10.120.0.1
ADDR_B=10.120.0.2
LINK_PREFIX=24
WANT_IMAGES=${C2S_IMAGES:-1}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_HOST

PROG=swarm.sh
USAGE="{up|down|status} DIR"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command_and_dir up 80 "$@"

HASH=$(printf '%s' "$DIR" | sha256sum | cut -c1-10)
FACTS="$DIR/swarm.env"

# Per-node settings: node_var NODE KEY
ns_of() { echo "c2s-$HASH-$1"; }
host_of() { engine_host "$DIR/$1"; }
name_of() { echo "c2s-$1-${HASH:0:6}"; }
addr_of() { if [ "$1" = a ]; then echo "$ADDR_A"; else echo "$ADDR_B"; fi; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

dk() {  # node args...
    local node=$1
    shift
    timeout 30 "$DOCKER" -H "$(host_of "$node")" "$@"
}

answers() { engine_answers "$DIR/$1"; }  # node

mounted_under() {
    awk -v root="$1" '$2 == root || index($2, root "/") == 1 {n++} END {exit !n}' /proc/mounts
}

# ---------------------------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------------------------

make_link() {
    local a b
    a=$(ns_of a)
    b=$(ns_of b)
    ip netns add "$a"
    ip netns add "$b"
    # Both ends are created directly inside the namespaces: no interface in the host netns.
    ip -n "$a" link add eth0 type veth peer name eth0 netns "$b"
    ip -n "$a" addr add "$ADDR_A/$LINK_PREFIX" dev eth0
    ip -n "$b" addr add "$ADDR_B/$LINK_PREFIX" dev eth0
    local ns
    for ns in "$a" "$b"; do
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
    done
}

# Start the dockerd of NODE in the background (hostname: the node's name); non-zero (the daemon
# killed) unless it answers in time.
launch() {  # node driver
    local node=$1 driver=$2 bip pool
    local -a EXTRA_ARGS
    read_extra_args
    if [ "$node" = a ]; then bip=$BIP_A pool=$POOL_A; else bip=$BIP_B pool=$POOL_B; fi
    launch_dockerd "$DIR/$node" "$(ns_of "$node")" "$driver" "$bip" "$pool" "$(name_of "$node")"
}

wait_ready() { wait_dockerd "$DIR/$1" "dockerd of node $1"; }  # node

start_nodes() {
    local driver=${C2S_STORAGE_DRIVER:-overlay2} node ok=1
    for node in a b; do launch "$node" "$driver"; done
    for node in a b; do wait_ready "$node" || ok=""; done
    if [ -z "$ok" ] && [ -z "${C2S_STORAGE_DRIVER:-}" ]; then
        log "start with overlay2 failed; last log lines:"
        tail -n 15 "$DIR/a/dockerd.log" "$DIR/b/dockerd.log" >&2 || true
        log "retrying with the vfs storage driver"
        for node in a b; do stop_dockerd "$DIR/$node" "dockerd of node $node"; done
        kill_leftovers "$DIR" "$(ns_of a)" "$(ns_of b)"
        unmount_under "$DIR"
        driver=vfs ok=1
        for node in a b; do launch "$node" "$driver"; done
        for node in a b; do wait_ready "$node" || ok=""; done
    fi
    if [ -z "$ok" ]; then
        tail -n 40 "$DIR/a/dockerd.log" "$DIR/b/dockerd.log" >&2 || true
        return 1
    fi
}

swarm_state() {  # node
    timeout 10 "$DOCKER" -H "$(host_of "$1")" info \
        --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}' \
        2>/dev/null
}

write_facts() {
    local a_id b_id ovl_id tmp
    a_id=$(swarm_state a | awk '{print $3}')
    b_id=$(swarm_state b | awk '{print $3}')
    ovl_id=$(dk a network inspect --format '{{.ID}}' "$OVERLAY")
    tmp="$FACTS.tmp"
    {
        echo "NODE_A_HOST=$(host_of a)"
        echo "NODE_B_HOST=$(host_of b)"
        echo "NODE_A_NAME=$(name_of a)"
        echo "NODE_B_NAME=$(name_of b)"
        echo "NODE_A_ADDR=$ADDR_A"
        echo "NODE_B_ADDR=$ADDR_B"
        echo "NODE_A_NETNS=$(ns_of a)"
        echo "NODE_B_NETNS=$(ns_of b)"
        echo "NODE_A_PID=$(cat "$DIR/a/dockerd.pid")"
        echo "NODE_B_PID=$(cat "$DIR/b/dockerd.pid")"
        echo "NODE_A_ID=$a_id"
        echo "NODE_B_ID=$b_id"
        echo "OVERLAY=$OVERLAY"
        echo "OVERLAY_ID=$ovl_id"
        echo "OVERLAY_SUBNET=$OVERLAY_SUBNET"
        echo "SWARM_POOL=$SWARM_POOL"
    } >"$tmp"
    mv "$tmp" "$FACTS"
}

healthy() {
    [ -s "$FACTS" ] && answers a && answers b || return 1
    case "$(swarm_state a)" in "active true "*) ;; *) return 1 ;; esac
    case "$(swarm_state b)" in "active false "*) ;; *) return 1 ;; esac
    # The overlay named in the facts (up may have run with another C2S_OVERLAY).
    dk a network inspect "$(sed -n 's/^OVERLAY=//p' "$FACTS")" >/dev/null 2>&1
}

do_up() {
    local t0 t node token img_pids="" p
    t0=$(now)
    if healthy; then
        log "swarm of $DIR is already up"
        cat "$FACTS"
        return 0
    fi
    ENGINE=$(engine_name)
    ENGINE_PATH=$(engine_path "$ENGINE")
    command -v "$DOCKER" >/dev/null || die "docker client '$DOCKER' not found"
    if [ -e "/run/netns/$(ns_of a)" ] || [ -e "/run/netns/$(ns_of b)" ] \
        || dockerd_pid "$DIR/a" >/dev/null || dockerd_pid "$DIR/b" >/dev/null; then
        log "leftovers of an earlier swarm in $DIR: tearing them down first"
        do_down
    fi
    mkdir -p "$DIR/a" "$DIR/b"

    echo "$ENGINE" >"$DIR/engine"
    t=$(now)
    make_link
    log "phase netns+veth: $(since "$t") s"

    t=$(now)
    start_nodes || { do_down; die "the nodes did not start"; }
    log "phase dockerd $ENGINE a+b ready: $(since "$t") s (pids $(cat "$DIR/a/dockerd.pid")," \
        "$(cat "$DIR/b/dockerd.pid"))"

    # The images build while the swarm forms.
    if [ "$WANT_IMAGES" = 1 ]; then
        for node in a b; do
            bash "$HERE/images.sh" "$(host_of "$node")" >"$DIR/$node/images.log" 2>&1 9>&- &
            img_pids="$img_pids $!"
        done
    fi

    t=$(now)
    if ! dk a swarm init --advertise-addr "$ADDR_A" --listen-addr "$ADDR_A:2377" \
        --default-addr-pool "$SWARM_POOL" --default-addr-pool-mask-length 24 >/dev/null; then
        do_down
        die "swarm init failed"
    fi
    log "phase swarm init: $(since "$t") s"

    t=$(now)
    token=$(dk a swarm join-token -q worker)
    if ! dk b swarm join --advertise-addr "$ADDR_B" --listen-addr "$ADDR_B:2377" \
        --token "$token" "$ADDR_A:2377" >/dev/null; then
        do_down
        die "swarm join failed"
    fi
    # The manager must see the worker Ready before tasks/attachments can be scheduled on it.
    local deadline=$(( $(date +%s) + 30 ))
    until [ "$(dk a node inspect --format '{{.Status.State}}' "$(name_of b)" 2>/dev/null)" \
        = ready ]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            do_down
            die "node b is not ready on the manager after 30 s"
        fi
        sleep 0.1
    done
    log "phase swarm join (+ready): $(since "$t") s"

    t=$(now)
    if ! dk a network create -d overlay --attachable --subnet "$OVERLAY_SUBNET" \
        --label c2s.harness=1 "$OVERLAY" >/dev/null; then
        do_down
        die "could not create overlay $OVERLAY"
    fi
    log "phase overlay create: $(since "$t") s"

    if [ -n "$img_pids" ]; then
        t=$(now)
        for p in $img_pids; do
            if ! wait "$p"; then
                cat "$DIR/a/images.log" "$DIR/b/images.log" >&2 || true
                do_down
                die "scripts/images.sh failed"
            fi
        done
        log "phase images (waited after the swarm formed): $(since "$t") s"
    fi

    write_facts
    log "swarm up in $DIR: $(since "$t0") s"
    cat "$FACTS"
}

# ---------------------------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------------------------

# Remove the node's containers, then stop the daemon.
stop_node() {  # node
    local node=$1 t
    t=$(now)
    remove_containers "$DIR/$node"
    stop_dockerd "$DIR/$node" "dockerd of node $node"
    log "node $node: stopped in $(since "$t") s"
}

do_down() {
    local t0 node
    t0=$(now)
    rm -f "$FACTS" "$DIR/engine"
    # Both nodes at once (a manager and a worker stopping in turn each wait for the other).
    stop_node a &
    local pa=$!
    stop_node b &
    local pb=$!
    wait "$pa" || true
    wait "$pb" || true
    log "phase stop nodes: $(since "$t0") s"
    kill_leftovers "$DIR" "$(ns_of a)" "$(ns_of b)"
    unmount_under "$DIR"
    delete_netns "$(ns_of a)" "$(ns_of b)"
    if mounted_under "$DIR"; then
        log "warning: mounts remain under $DIR; keeping its data"
    else
        for node in a b; do
            [ -d "$DIR/$node" ] || continue
            rm -rf --one-file-system "$DIR/$node/data" "$DIR/$node/exec"
            rm -f "$DIR/$node/docker.sock" "$DIR/$node/docker.pid" "$DIR/$node/dockerd.pid"
        done
    fi
    log "swarm of $DIR down: $(since "$t0") s"
}

do_status() {
    if healthy; then
        cat "$FACTS"
        return 0
    fi
    local node
    for node in a b; do
        if answers "$node"; then
            log "node $node answers; swarm: $(swarm_state "$node" || echo '?')"
        else
            log "node $node does not answer"
        fi
    done
    return 1
}

# up and down of one DIR never run at once (a DIR that is gone can still have leftovers: down
# then runs without the lock).
if [ "$cmd" != status ] && [ -d "$DIR" ]; then
    exec 9>"$DIR/.lock"
    flock 9
fi

case $cmd in
    up) do_up ;;
    down) do_down ;;
    status) do_status ;;
    *) usage ;;
esac
