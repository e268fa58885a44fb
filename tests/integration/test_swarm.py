"""Pods on two nodes joined by a Docker Swarm attachable overlay, each node's plugin talking
to its own dockerd (scripts/swarm.sh: node a = manager, node b = worker)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from c2ctest import Resources
from pluginrun import Plugin, cri_args, ip_addrs, plugin_executable
from swarmnodes import SwarmNode, SwarmNodes, swarm_fixture

swarm = swarm_fixture()


@pytest.fixture(autouse=True)
def _reset(swarm: SwarmNodes) -> Iterator[None]:
    yield
    for node in swarm.nodes:  # the plugin's proxy sandboxes are not the helpers' to track
        for c in node.client.containers.list(all=True,
                                             filters={"label": "io.cni2cnm.sandbox=true"}):
            c.remove(force=True)
    swarm.cleanup()


def plugin_on(node: SwarmNode, resources: Resources, network: str, **conf: Any) -> Plugin:
    return Plugin(node.host, str(resources.tmpdir()), network,
                  conf_extra={"sandboxImage": "local/pause:3.10", **conf})


def serve(node: SwarmNode, pod: Any, port: int, reply: str) -> None:
    """A TCP server in the pod's namespace that answers every connection."""
    node.sidecar(pod, ["sh", "-c", f"while true; do echo {reply} | nc -l -p {port}; done"])


def in_subnet(addr: str, subnet: str) -> bool:
    return ipaddress.ip_interface(addr).ip in ipaddress.ip_network(subnet)


def pod_add(node: SwarmNode, plugin: Plugin, pod: Any) -> dict[str, Any]:
    netns = f"/proc/{node.pid(pod)}/ns/net"
    return plugin.run("ADD", pod.id, netns, cni_args=cri_args(pod.id)).ok().doc


def test_container_mode_on_manager_and_worker(swarm: SwarmNodes, resources: Resources) -> None:
    assert not swarm.b.network_visible()  # a worker cannot see the overlay before it is used
    plugins = {n.key: plugin_on(n, resources, swarm.overlay) for n in swarm.nodes}
    plugins["b"].run("STATUS", "", "", ifname="", conf=plugins["b"].conf(cniVersion="1.1.0")
                     ).silent()
    pods = {n.key: n.pause() for n in swarm.nodes}
    results = {n.key: pod_add(n, plugins[n.key], pods[n.key]) for n in swarm.nodes}

    for node in swarm.nodes:
        res = results[node.key]
        overlay_if, gw_if = res["interfaces"]
        assert overlay_if["name"] == "eth0"
        [overlay_ip] = [ip for ip in res["ips"] if ip["interface"] == 0]
        assert in_subnet(overlay_ip["address"], swarm.subnet)
        assert "gateway" not in overlay_ip  # overlay endpoints have no gateway
        assert node.ip(pods[node.key]) == overlay_ip["address"].split("/")[0]
        # The docker_gwbridge interface carries the default route.
        [gw_ip] = [ip for ip in res["ips"] if ip["interface"] == 1]
        assert gw_if["name"] == "eth1" and gw_ip["gateway"]
        assert {"dst": "0.0.0.0/0", "gw": gw_ip["gateway"]} in res["routes"]
        netns = f"/proc/{node.pid(pods[node.key])}/ns/net"
        plugins[node.key].run("CHECK", pods[node.key].id, netns, prev=res).silent()

    # Cross-node TCP both ways over the overlay.
    for server, client in ((swarm.a, swarm.b), (swarm.b, swarm.a)):
        serve(server, pods[server.key], 8080, f"hello-from-{server.key}")
        peer = client.sidecar(pods[client.key])
        ip = results[server.key]["ips"][0]["address"].split("/")[0]
        swarm.wait_tcp(client, peer, ip, 8080, f"hello-from-{server.key}")

    for node in swarm.nodes:
        netns = f"/proc/{node.pid(pods[node.key])}/ns/net"
        plugins[node.key].run("DEL", pods[node.key].id, netns, prev=results[node.key]).silent()
        assert plugins[node.key].records() == []
        assert swarm.overlay not in node.api.inspect_container(
            pods[node.key].id)["NetworkSettings"]["Networks"]
    swarm.b.wait_network_visible(False)  # the worker dropped the network again


def test_proxy_mode_namespace_on_worker_reached_from_manager(swarm: SwarmNodes,
                                                             resources: Resources) -> None:
    ns = resources.netns()
    plugin = plugin_on(swarm.b, resources, swarm.overlay)
    cid = "cnitool-" + "b0" * 10
    res = plugin.run("ADD", cid, ns).ok().doc
    [iface] = res["interfaces"]  # overlay only: proxy attachments get no gwbridge egress
    addr = res["ips"][0]["address"]
    assert in_subnet(addr, swarm.subnet) and iface["sandbox"] == ns
    assert ip_addrs(ns)["eth0"]["addrs"] == [addr]
    server = subprocess.Popen(
        ["nsenter", f"--net={ns}", "busybox", "sh", "-c",
         "while true; do echo from-worker-netns | busybox nc -l -p 7070; done"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    resources.add_cleanup(lambda: (subprocess.run(["pkill", "-KILL", "-s", str(server.pid)]),
                                   server.wait()))
    time.sleep(0.3)
    client = swarm.a.busybox()
    swarm.a.attach(client)
    swarm.wait_tcp(swarm.a, client, addr.split("/")[0], 7070, "from-worker-netns")
    plugin.run("CHECK", cid, ns, prev=res).silent()
    plugin.run("DEL", cid, ns, prev=res).silent()
    assert plugin.records() == []
    assert swarm.b.client.containers.list(all=True,
                                          filters={"label": "io.cni2cnm.sandbox=true"}) == []


def test_status_for_a_missing_network_on_the_manager(swarm: SwarmNodes,
                                                     resources: Resources) -> None:
    plugin = plugin_on(swarm.a, resources, "c2ct-no-such-overlay", cniVersion="1.1.0")
    out = plugin.run("STATUS", "", "", ifname="")
    assert "c2ct-no-such-overlay" in out.error(50)["details"]


@pytest.mark.parametrize("attachable", [None, False], ids=["missing", "not-attachable"])
def test_worker_add_to_a_network_it_cannot_join(swarm: SwarmNodes, resources: Resources,
                                                attachable: bool | None) -> None:
    """A worker attaches through the manager's RPC: for a network that exists nowhere, or an
    overlay that is not attachable, dockerd answers 500 (not 404) with the manager's reason;
    the plugin makes that error 7 saying why and leaves the pod as it was, still usable."""
    pod = swarm.b.pause()
    if attachable is None:
        network, engine_says = "c2ct-no-such-overlay", "code = NotFound"
        plugin_says = "c2ct-no-such-overlay not found"
    else:
        network = swarm.create_overlay(attachable=False, subnet="10.121.9.0/24")
        engine_says = plugin_says = "not manually attachable"
    plugin = plugin_on(swarm.b, resources, network, mode="container")
    out = pod_add_raw(swarm.b, plugin, pod)
    assert plugin_says in out.error(7)["details"]
    nets = swarm.b.api.inspect_container(pod.id)["NetworkSettings"]["Networks"]
    assert list(nets) == ["none"]  # rolled back: the pod is as it was
    assert plugin.records() == []
    # the engine's own answer, that the plugin translated
    swarm.b.api.disconnect_container_from_network(pod.id, "none")
    with pytest.raises(docker.errors.APIError) as err:
        swarm.b.api.connect_container_to_network(pod.id, network)
    assert err.value.status_code == 500 and engine_says in err.value.explanation
    assert swarm.b.attach(pod)["EndpointID"]  # the pod is still usable


def pod_add_raw(node: SwarmNode, plugin: Plugin, pod: Any) -> Any:
    return plugin.run("ADD", pod.id, f"/proc/{node.pid(pod)}/ns/net", cni_args=cri_args(pod.id))


def test_static_ip_taken_on_this_node_is_refused_before_connecting(
    swarm: SwarmNodes, resources: Resources
) -> None:
    holder, pod = swarm.a.pause(), swarm.a.pause()
    plugin = plugin_on(swarm.a, resources, swarm.overlay)
    taken = pod_add(swarm.a, plugin, holder)["ips"][0]["address"]
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [taken]})
    t0 = time.monotonic()
    out = plugin.run("ADD", pod.id, f"/proc/{swarm.a.pid(pod)}/ns/net", conf=conf)
    assert "already in use" in out.error(7)["details"]
    assert time.monotonic() - t0 < 15  # not the engine's 20-second hang


def test_static_ip_taken_on_the_other_node_survives_the_engine_hang(
    swarm: SwarmNodes, resources: Resources
) -> None:
    # The worker cannot see the manager's endpoints: dockerd hangs ~20 s, then refuses.
    holder = swarm.a.pause()
    taken = pod_add(swarm.a, plugin_on(swarm.a, resources, swarm.overlay), holder)
    addr = taken["ips"][0]["address"]
    pod = swarm.b.pause()
    plugin = plugin_on(swarm.b, resources, swarm.overlay)
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [addr]})
    out = plugin.run("ADD", pod.id, f"/proc/{swarm.b.pid(pod)}/ns/net", conf=conf)
    assert "context deadline exceeded" in out.error(7)["details"]  # not a plugin timeout (11)
    assert plugin.records() == []
    assert list(swarm.b.api.inspect_container(pod.id)["NetworkSettings"]["Networks"]) == ["none"]


def test_gc_on_the_worker_removes_a_stale_attachment(swarm: SwarmNodes,
                                                     resources: Resources) -> None:
    plugin = plugin_on(swarm.b, resources, swarm.overlay, cniVersion="1.1.0")
    pod = swarm.b.pause()
    pod_add(swarm.b, plugin, pod)
    assert swarm.b.network_visible()
    plugin.run("GC", "", "", ifname="", conf=plugin.conf()).silent()
    assert plugin.records() == []
    assert swarm.overlay not in swarm.b.api.inspect_container(
        pod.id)["NetworkSettings"]["Networks"]
    swarm.b.wait_network_visible(False)



def cli(*args: str) -> dict[str, Any] | list[Any]:
    proc = subprocess.run([plugin_executable(), *args], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_doctor_and_inspect_know_swarm_roles(swarm: SwarmNodes, resources: Resources) -> None:
    state = str(resources.tmpdir())
    for node, role in ((swarm.a, "manager"), (swarm.b, "worker")):
        report = cli("doctor", "--docker-host", node.host, "--state-dir", state,
                     "--network", swarm.overlay, "-o", "json")
        checks = {c["check"]: c for c in report["checks"]}  # type: ignore[call-overload]
        assert checks["swarm"]["status"] == "OK" and role in checks["swarm"]["message"]
        if role == "manager":
            assert checks["network"]["status"] == "OK"
            assert "driver overlay, scope swarm" in checks["network"]["message"]
        else:  # not visible before the first local attachment: not a failure
            assert checks["network"]["status"] == "WARN"
    plugin = Plugin(swarm.b.host, state, swarm.overlay)
    pod_add(swarm.b, plugin, swarm.b.pause())
    [row] = cli("inspect", "--docker-host", swarm.b.host, "--state-dir", state, "-o", "json")
    assert row["dockerNetwork"]["driver"] == "overlay"  # type: ignore[index]
    assert row["dockerNetwork"]["scope"] == "swarm"  # type: ignore[index]
