"""The two-node swarm harness (scripts/swarm.sh, swarmnodes.py) works: a manager and a worker,
an attachable overlay, none-mode pause containers attached with `network connect` on both nodes
and reaching each other over TCP.  Also pins the engine behaviour the plugin relies on (dockerd
20.10): the worker only sees the overlay while it has a local attachment, overlay endpoints have
no Gateway, and a container can be created on the worker with network_mode=<overlay>."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from c2ctest import BUSYBOX_IMAGE, PAUSE_IMAGE, unique_name
from swarmnodes import SwarmNodes, swarm_fixture

# The harness only (no plugin run): the daemon-mode pass skips it.
pytestmark = pytest.mark.own_modes

swarm = swarm_fixture()

PORT = 7000


@pytest.fixture(autouse=True)
def _cleanup(swarm: SwarmNodes) -> Iterator[None]:
    yield
    swarm.cleanup()


def in_subnet(ip: str, subnet: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(subnet)


def assert_not_on_worker(swarm: SwarmNodes) -> None:
    """The worker has no local attachment: `network inspect` is 404 (polled: the network goes
    a moment after the last attachment)."""
    swarm.b.wait_network_visible(False, timeout=10)
    with pytest.raises(docker.errors.NotFound):
        swarm.b.api.inspect_network(swarm.overlay)


def server(node: Any, pod: Any, reply: str) -> Any:
    """A busybox sidecar in the pod's netns: a TCP server answering `reply` on PORT."""
    return node.sidecar(pod, ["nc", "-ll", "-p", str(PORT), "-e", "echo", reply])


def test_nodes_ready(swarm: SwarmNodes) -> None:
    print(f"swarm up in {swarm.up_seconds:.1f}s: {swarm.facts}")
    for node in swarm.nodes:
        assert node.client.ping()
        for image in (BUSYBOX_IMAGE, PAUSE_IMAGE):
            node.client.images.get(image)
        assert node.client.info()["Name"] == node.name

    a, b = swarm.a.swarm_info(), swarm.b.swarm_info()
    assert a["LocalNodeState"] == "active" and b["LocalNodeState"] == "active"
    assert a["ControlAvailable"] is True
    assert b["ControlAvailable"] is False
    assert a["NodeAddr"] == swarm.a.addr and b["NodeAddr"] == swarm.b.addr
    assert [m["Addr"] for m in b["RemoteManagers"]] == [f"{swarm.a.addr}:2377"]
    assert a["Nodes"] == 2 and a["Managers"] == 1

    nodes = {n.attrs["Description"]["Hostname"]: n.attrs for n in swarm.a.client.nodes.list()}
    assert set(nodes) == {swarm.a.name, swarm.b.name}
    assert all(n["Status"]["State"] == "ready" for n in nodes.values())
    assert nodes[swarm.b.name]["Spec"]["Role"] == "worker"

    net = swarm.a.api.inspect_network(swarm.overlay)
    assert net["Id"] == swarm.overlay_id
    assert (net["Driver"], net["Scope"], net["Attachable"]) == ("overlay", "swarm", True)
    assert [c["Subnet"] for c in net["IPAM"]["Config"]] == [swarm.subnet]


def test_attach_on_both_nodes_and_cross_node_tcp(swarm: SwarmNodes) -> None:
    a, b = swarm.a, swarm.b
    # The worker does not know the overlay before its first local attachment ...
    assert_not_on_worker(swarm)
    with pytest.raises(docker.errors.NotFound):
        b.api.inspect_network(swarm.overlay_id)

    pod_a, pod_b = a.pause(), b.pause()
    timings = {}
    endpoints = {}
    for node, pod in ((a, pod_a), (b, pod_b)):
        t0 = time.monotonic()
        endpoints[node.key] = node.attach(pod)  # disconnect none, connect the overlay
        timings[node.key] = round(time.monotonic() - t0, 2)
    print(f"first connects (s): {timings}")

    # ... but `network connect` works there, and then it does.
    assert b.network_visible()
    for node, pod in ((a, pod_a), (b, pod_b)):
        ep = endpoints[node.key]
        print(f"{node.key} endpoint: {json.dumps(ep)}")
        assert ep["EndpointID"]
        assert ep["NetworkID"] == swarm.overlay_id
        assert in_subnet(ep["IPAddress"], swarm.subnet)
        assert ep["Gateway"] == ""  # overlay endpoints report no gateway
        # Only local endpoints are listed in the network's Containers.
        listed = node.api.inspect_network(swarm.overlay)["Containers"]
        assert pod.id in listed
        other = pod_b if node is a else pod_a
        assert other.id not in listed
        # eth0 = overlay (MTU 1450); the default route is not via the overlay.
        addrs = json.loads(node.netns_exec(pod, "ip", "-j", "addr").stdout)
        eth0 = next(i for i in addrs if i["ifname"] == "eth0")
        assert eth0["mtu"] == 1450
        assert ep["IPAddress"] in [x["local"] for x in eth0["addr_info"]]
        routes = json.loads(node.netns_exec(pod, "ip", "-j", "route").stdout)
        default = [r for r in routes if r["dst"] == "default"]
        assert default and default[0]["dev"] != "eth0"
    assert endpoints["a"]["IPAddress"] != endpoints["b"]["IPAddress"]

    # Cross-node TCP, both ways, from busybox sidecars sharing the pods' netns.
    side_a = server(a, pod_a, "pong-a")
    side_b = server(b, pod_b, "pong-b")
    took_ba = swarm.wait_tcp(b, side_b, endpoints["a"]["IPAddress"], PORT, "pong-a")
    took_ab = swarm.wait_tcp(a, side_a, endpoints["b"]["IPAddress"], PORT, "pong-b")
    print(f"TCP b->a (s, attempts): {took_ba}, a->b: {took_ab}")

    # Disconnecting the last local attachment: the worker forgets the overlay again.
    b.remove(side_b)  # shares the pod's netns, holds no endpoint of its own
    b.detach(pod_b)
    assert_not_on_worker(swarm)
    assert a.network_visible()  # the manager always sees it


def test_several_attachments_per_node_get_distinct_addresses(swarm: SwarmNodes) -> None:
    """Three pods per node on the overlay: every connect gives an endpoint with its own
    address in the subnet, and removing them leaves the worker without the overlay. (How
    long connects take is the benchmark's business, not a test's.)"""
    addresses: list[str] = []
    for node in swarm.nodes:
        for pod in [node.pause() for _ in range(3)]:
            ep = node.attach(pod)
            assert ep["EndpointID"] and in_subnet(ep["IPAddress"], swarm.subnet)
            addresses.append(ep["IPAddress"])
    assert len(set(addresses)) == len(addresses) == 6
    for node in swarm.nodes:
        node.cleanup()
    assert_not_on_worker(swarm)


def test_worker_creates_container_on_overlay(swarm: SwarmNodes) -> None:
    """What the plugin does for a proxy sandbox: create_container with
    network_mode=<overlay> and an endpoint config, directly on the worker."""
    b = swarm.b
    assert_not_on_worker(swarm)
    ip = str(next(iter(ipaddress.ip_network(swarm.subnet).hosts())) + 200)
    name = unique_name("proxy")
    b.containers.append(name)
    cid = b.api.create_container(
        PAUSE_IMAGE, name=name,
        host_config=b.api.create_host_config(network_mode=swarm.overlay),
        networking_config=b.api.create_networking_config(
            {swarm.overlay: b.api.create_endpoint_config(ipv4_address=ip)}),
    )["Id"]
    # Created, not started: only the config is recorded and the worker still has no network.
    assert b.endpoint(cid)["EndpointID"] == ""
    assert not b.network_visible()
    b.api.start(cid)
    ep = b.endpoint(cid)
    assert ep["IPAddress"] == ip and ep["EndpointID"] and ep["Gateway"] == ""
    assert b.api.inspect_container(cid)["HostConfig"]["NetworkMode"] == swarm.overlay
    b.remove(cid)
    assert_not_on_worker(swarm)
