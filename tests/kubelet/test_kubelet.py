"""A real kubelet (v1.20.2, standalone, static pods) networks its pods through cni2cnm, on
containerd 1.6's CRI (proxy sandboxes) and on the kubelet's dockershim (container mode).

The tests of a mode share one node and run in file order: pods Running with Docker-network
addresses, traffic both ways, a killed pause container replaced, dockerd restarted while pods
run, ten pods at once, a teardown that leaves nothing, and last (it fails on engines that
lose DELs) dockerd restarted while pods run.  Each step's time is recorded in
node.timings (printed at the end of the run).
"""

from __future__ import annotations

import ipaddress
import sys
import time
from collections import Counter
from typing import Any

import pytest
from kubenode import (
    BUSYBOX_IMAGE,
    DOCKER_NETWORK,
    POD_SUBNET,
    KubeNode,
    Pod,
    wait_for,
)

pytestmark = [pytest.mark.timeout(600)]

PODS = ("web-a", "web-b")
SUBNET = ipaddress.ip_network(POD_SUBNET)


def fetch(node: KubeNode, pod: Pod, ip: str) -> str:
    """GET http://ip:8080/ from inside the pod's network namespace."""
    get = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
           f"'http://{ip}:8080/', timeout=5).read().decode())")
    proc = node.in_pod(pod, sys.executable, "-I", "-c", get)
    assert proc.returncode == 0, f"{pod.name} -> {ip}: {proc.stderr}"
    return proc.stdout.strip()


def fetch_from(container: Any, ip: str) -> str:
    """GET http://ip:8080/ from a Docker container (busybox nc: its wget crashes here)."""
    code, out = container.exec_run(
        ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080"])
    assert code == 0, f"{container.name} -> {ip}: {out!r}"
    return out.decode().replace("\r", "").split("\n\n", 1)[-1].strip()


def running_pods(node: KubeNode, *names: str) -> dict[str, Pod]:
    node.apply(*names)
    return node.wait_running(*names)


def web_container(node: KubeNode, text: str, ip: str | None = None) -> Any:
    """A Docker container on the network serving `text` on 8080 (removed by the caller)."""
    script = (f"trap 'exit 0' TERM; mkdir -p /w; echo {text} >/w/index.html; "
              "httpd -p 8080 -h /w; while :; do sleep 1; done")
    kwargs: dict[str, Any] = {"network": DOCKER_NETWORK}
    if ip is None:
        return node.docker.containers.run(BUSYBOX_IMAGE, ["sh", "-c", script], detach=True,
                                          name=f"c2k-{text}", **kwargs)
    c = node.docker.containers.create(BUSYBOX_IMAGE, ["sh", "-c", script],
                                      name=f"c2k-{text}", network=DOCKER_NETWORK)
    node.docker.networks.get(DOCKER_NETWORK).disconnect(c)
    node.docker.networks.get(DOCKER_NETWORK).connect(c, ipv4_address=ip)
    try:
        c.start()
    except Exception:
        c.remove(force=True)
        raise
    return c


def container_ip(c: Any) -> str:
    c.reload()
    return str(c.attrs["NetworkSettings"]["Networks"][DOCKER_NETWORK]["IPAddress"])


def consistent(node: KubeNode, names: tuple[str, ...]) -> str | None:
    """Why the plugin's state disagrees with the runtime's and the engine's (None: it agrees):
    one record per running sandbox and no other; every endpoint on the network belongs to a
    running pod or to a Docker container of the test; in proxy mode every address in a pod's
    namespace is held by that pod's sandbox endpoint."""
    sandboxes = set(node.sandboxes())
    records = node.records()
    recorded = {r.container_id for r in records}
    if recorded != sandboxes:
        return f"records {sorted(recorded)} != running sandboxes {sorted(sandboxes)}"
    pods = node.pods()
    pod_ips = {pods[n].ip for n in names if n in pods}
    endpoints = node.endpoints()
    stray = {name: ip for name, ip in endpoints.items()
             if ip not in pod_ips and not name.startswith("c2k-")}
    if stray:
        return f"endpoints of no running pod: {stray}"
    if node.mode == "containerd":
        held = {r.sandbox_name: r for r in records}
        for n in names:
            if n not in pods:
                continue
            for ip in node.pod_addresses(pods[n]):
                owners = [name for name, eip in endpoints.items() if eip == ip]
                if not any(o in held for o in owners):
                    return (f"pod {n} has {ip}, which no sandbox endpoint holds "
                            f"(endpoints {endpoints})")
    return None


def assert_no_shared_address(node: KubeNode, names: tuple[str, ...]) -> None:
    """No two live interfaces on the network share an address: Docker containers' own
    endpoints plus the addresses in the pods' namespaces (a proxy sandbox's endpoint, or a
    dockershim pause container's, is the pod's interface, counted once)."""
    sandbox_names = {r.sandbox_name for r in node.records()}  # proxy mode
    addresses = [ip for name, ip in node.endpoints().items()
                 if name not in sandbox_names and not name.startswith("k8s_POD_")]
    pods = node.pods()
    for n in names:
        if n in pods:
            addresses += [ip for ip in node.pod_addresses(pods[n])
                          if ipaddress.ip_address(ip) in SUBNET]
    dup = [ip for ip, k in Counter(addresses).items() if k > 1]
    assert not dup, f"addresses on two live interfaces: {dup} ({addresses})"


def test_pods_running_with_docker_addresses(node: KubeNode) -> None:
    pods = node.timed("2 pods Running", lambda: running_pods(node, *PODS))
    records = {r.container_id: r for r in node.records()}
    assert len(records) == 2, records
    want_mode = "proxy" if node.mode == "containerd" else "container"
    endpoints = node.endpoints()
    for name in PODS:
        pod = pods[name]
        assert ipaddress.ip_address(pod.ip) in SUBNET, pod
        assert pod.ip in endpoints.values(), f"{pod.ip} not on {DOCKER_NETWORK}: {endpoints}"
        assert node.pod_addresses(pod) == [pod.ip]
        [rec] = [r for r in records.values() if f"{pod.ip}/24" in r.ips]
        assert rec.mode == want_mode and rec.state == "attached", rec
        assert rec.container_id in node.sandboxes()


def test_traffic_both_ways(node: KubeNode) -> None:
    pods = running_pods(node, *PODS)
    a, b = pods["web-a"], pods["web-b"]
    peer = web_container(node, "docker-peer")
    try:
        t0 = time.monotonic()
        peer_ip = container_ip(peer)
        for pod in (a, b):
            assert fetch_from(peer, pod.ip) == pod.name
            assert fetch(node, pod, peer_ip) == "docker-peer"
        assert fetch(node, a, b.ip) == "web-b"
        assert fetch(node, b, a.ip) == "web-a"
        node.timings["traffic"] = round(time.monotonic() - t0, 2)
    finally:
        peer.remove(force=True)


def test_killed_pause_container_is_replaced(node: KubeNode) -> None:
    pods = running_pods(node, *PODS)
    old = pods["web-a"]
    old_sandbox = node.kill_sandbox(old)
    pods = node.timed("killed pause replaced", lambda: node.wait_running(
        *PODS, not_container={"web-a": old.container_id}))
    assert node.sandbox_of(pods["web-a"]) != old_sandbox
    wait_for("records and endpoints to match the pods",
             lambda: consistent(node, PODS) is None, 30)
    assert old_sandbox not in {r.container_id for r in node.records()}
    assert ipaddress.ip_address(pods["web-a"].ip) in SUBNET
    assert fetch(node, pods["web-b"], pods["web-a"].ip) == "web-a"
    assert len(node.proxy_sandboxes()) == (2 if node.mode == "containerd" else 0)


def test_ten_pods_at_once(node: KubeNode) -> None:
    names = tuple(f"burst-{i}" for i in range(10))
    t0 = time.monotonic()
    node.apply(*names)
    pods = node.wait_running(*names, timeout=120)
    node.timings["10 pods Running"] = round(time.monotonic() - t0, 2)
    ips = [pods[n].ip for n in names]
    assert len(set(ips)) == 10 and all(ipaddress.ip_address(i) in SUBNET for i in ips), ips
    t0 = time.monotonic()
    node.remove(*names)
    node.wait_gone(*names)
    wait_for("the 10 pods' records to go", lambda: {
        r.container_id for r in node.records()} <= set(node.sandboxes()), 90, 0.5)
    node.timings["10 pods removed"] = round(time.monotonic() - t0, 2)


def leftovers(node: KubeNode) -> str | None:
    """What the pods' teardown left (None: nothing)."""
    left = {
        "records": [(r.container_id[:12], r.state) for r in node.records()],
        "endpoints": node.endpoints(),
        "proxy sandboxes": [c.name for c in node.proxy_sandboxes()],
        "interfaces in the engine's namespace": node.engine_links(),
        "pod namespaces": node.netns_files(),
        "running sandboxes": node.sandboxes(),
    }
    return None if not any(left.values()) else str(left)


def remove_all(node: KubeNode, *names: str) -> None:
    """Remove the pods' manifests; then nothing of theirs may be left anywhere."""
    node.remove(*names)
    node.wait_gone(*names)
    try:
        wait_for("nothing left", lambda: leftovers(node) is None, 90, 0.5)
    except AssertionError:
        pytest.fail(f"after removing the manifests: {leftovers(node)}", pytrace=False)


def test_teardown_leaves_nothing(node: KubeNode) -> None:
    running_pods(node, *PODS)
    node.timed("teardown", lambda: remove_all(node, *PODS))


def test_dockerd_restart_while_pods_run(node: KubeNode) -> None:
    """dockerd stops (live-restore off: it stops every container) while pods run, and a pod
    being deleted then gets its DEL while the engine is gone (it fails); then dockerd starts.
    Afterwards: no record or endpoint of a sandbox that is gone (a DEL the runtime gave up on,
    as the dockershim does, is finished without it), the remaining pod Running, and in proxy
    mode no pod keeps an address Docker considers free."""
    node.apply("doomed", stubborn=True)
    pods = running_pods(node, *PODS, "doomed")
    before = {n: p.ip for n, p in pods.items()}
    log_mark = node.plugin_log.stat().st_size
    t0 = time.monotonic()
    try:
        if node.mode == "dockershim":
            # The dockershim tears a pod down only while dockerd answers: delete the pod, and
            # stop dockerd while the kubelet waits for its app container to stop (it ignores
            # SIGTERM), so the sandbox's DEL comes while dockerd is gone.
            kubelet_mark = node.kubelet_log.stat().st_size
            cid = pods["doomed"].container_id
            node.remove("doomed")
            wait_for("the kubelet to stop the doomed pod's container", lambda: (
                "Killing container" in (text := node.kubelet_log.read_text()[kubelet_mark:])
                and cid in text), 30, 0.2)
            node.stop_engine()
        else:
            node.stop_engine()
            node.remove("doomed")
        # Whether the kubelet tears the pod down during the outage is a race on the dockershim
        # (it skips pods while dockerd does not answer); on containerd it always does.
        deadline = time.monotonic() + (90 if node.mode == "containerd" else 30)
        while "DEL failed" not in node.plugin_log.read_text()[log_mark:]:
            assert time.monotonic() < deadline or node.mode == "dockershim", (
                f"no DEL failed while the engine was down; plugin log: "
                f"{node.plugin_log.read_text()[log_mark:]}")
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        node.timings["DELs failed during the outage"] = (
            node.plugin_log.read_text()[log_mark:].count("DEL failed"))
    finally:
        node.start_engine()
    node.timings["engine down and up"] = round(time.monotonic() - t0, 2)
    node.wait_gone("doomed")
    if node.mode == "dockershim":  # the pause container was stopped: a new sandbox
        node.timed("pods back after the restart", lambda: node.wait_running(
            *PODS, not_container={n: pods[n].container_id for n in PODS}))
    try:
        wait_for("records and endpoints to match the pods",
                 lambda: consistent(node, PODS) is None, 60, 1)
    except AssertionError:
        pytest.fail(f"after the restart: {consistent(node, PODS)}", pytrace=False)
    # Docker's view of free addresses: a container asking for each address the pods had.
    taken = []
    try:
        for i, ip in enumerate(before.values()):
            try:
                taken.append(web_container(node, f"claim{i}", ip))
            except Exception as exc:  # refused: the address is held
                assert "in use" in str(exc).lower(), exc
        assert_no_shared_address(node, PODS)
    finally:
        for c in taken:
            c.remove(force=True)
    if node.mode == "dockershim":
        a = node.pods()["web-a"]
        peer = web_container(node, "after-restart")
        try:
            assert fetch_from(peer, a.ip) == "web-a"
        finally:
            peer.remove(force=True)
    node.timed("teardown after the restart", lambda: remove_all(node, *PODS))
