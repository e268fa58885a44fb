#!/usr/bin/env bash
# cni2cnm demo:   sudo scripts/demo.sh
#
# What a Kubernetes node on cri-dockerd does for one pod, step by step, with cni2cnm as the
# CNI plugin:
#   1. a Docker network (bridge, private subnet 10.233.7.0/24) the pod must join
#   2. the pod's pause container, started with --network none as cri-dockerd starts it
#   3. CNI ADD: the plugin executed exactly as a runtime executes it (env + JSON on stdin)
#   4. the result, and the same attachment as Docker and the pod's namespace see it
#   5. an app container in the pod listens on TCP 8080; a client container on the Docker
#      network connects to the pod's IP
#   6. CNI CHECK and DEL
#   7. a network namespace Docker does not own (`ip netns add`, as containerd, CRI-O or podman
#      make them) joins the same Docker network through a proxy sandbox; then everything the
#      demo made is removed
# It starts a throwaway engine in its own network namespace unless DOCKER_HOST answers:
# C2C_ENGINE=20.10|28 (default 20.10, see scripts/engine.sh) and C2C_DOCKERD_ARGS pick it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "demo.sh: must run as root: sudo $0" >&2; exit 2; }

bold() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
note() { printf '   %s\n' "$*"; }

scripts/bootstrap.sh
PLUGIN="$ROOT/.venv/bin/cni2cnm"
DOCKER=docker

engine_dir="" state_dir=$(mktemp -d /tmp/c2c-demo-state.XXXX)
NET=c2c-demo-net POD=c2c-demo-pod APP=c2c-demo-app CLIENT=c2c-demo-client NS=c2c-demo-ns
PROG=demo.sh
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
cleanup() {
    local rc=$?
    trap - EXIT
    # The warm daemon the plugin started on demand (its socket is under the state dir).
    for p in $(pids_mentioning "python*" "$state_dir"); do kill -TERM "$p" 2>/dev/null || true; done
    ip netns delete $NS 2>/dev/null || true
    $DOCKER ps -aq --filter label=io.cni2cnm.network=$NET | xargs -r $DOCKER rm -f >/dev/null 2>&1 || true
    $DOCKER rm -f $CLIENT $APP $POD >/dev/null 2>&1 || true
    $DOCKER network rm $NET >/dev/null 2>&1 || true
    [ -n "$engine_dir" ] && { scripts/dockerd.sh stop "$engine_dir" >/dev/null 2>&1 || true; rm -rf "$engine_dir"; }
    rm -rf "$state_dir"
    exit $rc
}
trap cleanup EXIT

if [ -n "${DOCKER_HOST:-}" ] && timeout 10 $DOCKER -H "$DOCKER_HOST" info >/dev/null 2>&1; then
    bold "Using the Docker engine at $DOCKER_HOST"
else
    bold "Starting a throwaway Docker engine (own network namespace, data under /tmp)"
    engine_dir=$(mktemp -d /tmp/c2c-demo.XXXX)
    DOCKER_HOST=$(scripts/dockerd.sh start "$engine_dir")
    note "DOCKER_HOST=$DOCKER_HOST"
fi
note "engine: $($DOCKER -H "$DOCKER_HOST" version --format 'dockerd {{.Server.Version}}, API {{.Server.APIVersion}}')"
export DOCKER_HOST
scripts/images.sh "$DOCKER_HOST" >/dev/null 2>&1
note "local images: local/pause:3.10 (a static pause binary), local/busybox"

"$ROOT/.venv/bin/cni2cnm" install --bin-dir "$state_dir/bin" --conf-dir "$state_dir/net.d" \
    --state-dir "$state_dir" >/dev/null
PLUGIN="$state_dir/bin/cni2cnm"
note "cni2cnm install --bin-dir $state_dir/bin: the plugin file a runtime executes"
# The plugin's warm daemon, started on demand by the first request, lives beside the demo's
# state (instead of /run/cni2cnm) so that the demo removes it with everything else.
mkdir -m 700 "$state_dir/run"
export CNI2CNM_DAEMON_SOCKET="$state_dir/run/cni2cnm.sock"

bold "1. A Docker network for the pod"
$DOCKER network create --subnet 10.233.7.0/24 $NET >/dev/null
note "$DOCKER network create --subnet 10.233.7.0/24 $NET"

bold "2. The pod's sandbox, started the way cri-dockerd starts it (--network none)"
CID=$($DOCKER run -d --name $POD --network none local/pause:3.10)
PID=$($DOCKER inspect -f '{{.State.Pid}}' "$CID")
note "container $POD ${CID:0:12}, netns /proc/$PID/ns/net"

CONF=$(cat <<EOF
{"cniVersion": "1.0.0", "name": "$NET", "type": "cni2cnm", "stateDir": "$state_dir"}
EOF
)
cni() {  # cni COMMAND [prevResult]: run the plugin exactly as a CNI runtime does
    local conf=$CONF
    [ -n "${2:-}" ] && conf=$(printf '%s' "$CONF" | sed "s|}\$|, \"prevResult\": $2}|")
    printf '%s' "$conf" | env CNI_COMMAND="$1" CNI_CONTAINERID="$CID" \
        CNI_NETNS="/proc/$PID/ns/net" CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo;K8S_POD_INFRA_CONTAINER_ID=$CID" \
        DOCKER_HOST="$DOCKER_HOST" "$PLUGIN"
}

bold "3. CNI ADD (CNI_COMMAND=ADD, network config on stdin)"
note "stdin: $CONF"
RESULT=$(cni ADD)
echo "$RESULT" | python3 -m json.tool
POD_IP=$(printf '%s' "$RESULT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])')

for _ in $(seq 50); do [ -S "$CNI2CNM_DAEMON_SOCKET" ] && break; sleep 0.1; done
note "the first request ran in-process and started a warm daemon on demand:"
"$ROOT/.venv/bin/cni2cnm" version --daemon-socket "$CNI2CNM_DAEMON_SOCKET" 2>/dev/null \
    | sed -n 's/^/   /p' | grep -i daemon || true

bold "4. What Docker and the pod's namespace now say"
note "docker inspect: $($DOCKER inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}} endpoint {{printf \"%.12s\" (index .NetworkSettings.Networks \"$NET\").EndpointID}}" "$CID")"
nsenter --net="/proc/$PID/ns/net" ip -br addr | sed 's/^/   pod netns: /'
"$PLUGIN" inspect --state-dir "$state_dir" 2>/dev/null | sed 's/^/   /' || true

bold "5. TCP from a container on the Docker network to an app in the pod ($POD_IP:8080)"
$DOCKER run -d --name $APP --network "container:$CID" local/busybox \
    sh -c 'echo "hello from the pod" | nc -l -p 8080' >/dev/null
sleep 0.3
REPLY=$($DOCKER run --name $CLIENT --network $NET local/busybox nc -w 3 "$POD_IP" 8080)
note "client received: $REPLY"
[ "$REPLY" = "hello from the pod" ] || { echo "demo.sh: no TCP reply from the pod" >&2; exit 1; }

bold "6. CNI CHECK and CNI DEL (with the ADD result as prevResult)"
cni CHECK "$RESULT" && note "CHECK: ok (exit 0, no output)"
cni DEL "$RESULT" && note "DEL: ok (exit 0, no output)"
nets=$($DOCKER inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$CID")
note "Docker networks of $POD now: ${nets:-none (detached from $NET)}"

bold "7. A namespace Docker does not own joins the network (proxy sandbox)"
ip netns add $NS && ip -n $NS link set lo up
note "ip netns add $NS    (no Docker container owns it: mode auto picks a proxy sandbox)"
PROXY=$(printf '%s' "$CONF" | env CNI_COMMAND=ADD CNI_CONTAINERID=demo-netns \
    CNI_NETNS=/run/netns/$NS CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin DOCKER_HOST="$DOCKER_HOST" "$PLUGIN")
NS_IP=$(printf '%s' "$PROXY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"])')
note "ADD result: eth0 $NS_IP in /run/netns/$NS"
ip -n $NS -br addr | sed 's/^/   netns: /'
note "sandbox container: $($DOCKER ps --filter label=io.cni2cnm.network=$NET --format '{{.Names}}')"
$DOCKER run --rm --network $NET local/busybox ping -c 1 -W 2 "${NS_IP%/*}" | sed -n 2p | sed 's/^/   from Docker: /'
printf '%s' "$CONF" | env CNI_COMMAND=DEL CNI_CONTAINERID=demo-netns CNI_NETNS=/run/netns/$NS \
    CNI_IFNAME=eth0 DOCKER_HOST="$DOCKER_HOST" "$PLUGIN" && note "DEL: interface returned, sandbox removed"

bold "Done: removing the demo's containers, network$([ -n "$engine_dir" ] && echo " and engine")"
