"""ADD in container mode: the result in every CNI version, what Docker made, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from cni2cnm.engine import EngineUnavailable, NotFound
from cni2cnm.engine.versions import API_RANDOM_MAC, RELEASES
from cni2cnm.store import ADDING, Attachment, Store

from ..fakes import ALL_VERSIONS
from .conftest import World, cri_args, netns

LEGACY = ("0.1.0", "0.2.0")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_cri_dockerd_pod_result_in_every_version(world: World, version: str) -> None:
    world.version = version
    pod = world.pod()
    res = world.add(pod)
    ep = world.inspect(pod.id).endpoints["pods"]
    assert ep.ipv4 == "10.240.0.2/24" and ep.gateway == "10.240.0.1" and ep.attached
    assert res["cniVersion"] == version
    if version in LEGACY:
        assert res["ip4"] == {"ip": "10.240.0.2/24", "gateway": "10.240.0.1",
                              "routes": [{"dst": "0.0.0.0/0", "gw": "10.240.0.1"}]}
        assert "interfaces" not in res and "ips" not in res
    else:
        want = {"address": "10.240.0.2/24", "gateway": "10.240.0.1", "interface": 0}
        if version in ("0.3.0", "0.3.1", "0.4.0"):
            want = {"version": "4", **want}
        assert res["ips"] == [want]
        [iface] = res["interfaces"]
        assert iface["name"] == "eth0" and iface["sandbox"] == netns(pod)
        assert iface["mac"] == ep.mac == "02:42:0a:f0:00:02"  # 20.10 derives it from the IP
        assert ("mtu" in iface) == (version == "1.1.0")
        route = {"dst": "0.0.0.0/0", "gw": "10.240.0.1"}
        if version == "1.1.0":
            route.update(table=254, scope=0)
        assert res["routes"] == [route]
    eth0 = world.links(netns(pod))["eth0"]
    assert eth0.addresses == ("10.240.0.2/24",) and eth0.mac == ep.mac
    assert world.networks_of(pod.id) == ["pods"]  # `none` was detached first
    [rec] = world.records()
    assert (rec.state, rec.docker_id, rec.docker_name, rec.endpoint_id, rec.ips) == (
        "attached", pod.id, "web", ep.endpoint_id, ["10.240.0.2/24"])
    assert rec.none_detached and rec.docker_host == world.engine.base_url


def test_each_engine_flavour_names_and_addresses_the_interface(any_world: World) -> None:
    pod = any_world.pod()
    res = any_world.add(pod, ifname="eth0")
    [iface] = res["interfaces"]
    mac = any_world.inspect(pod.id).endpoints["pods"].mac
    assert iface["name"] == "eth0" and iface["mac"] == mac
    derived = mac == "02:42:0a:f0:00:02"
    assert derived == (any_world.engine.api < API_RANDOM_MAC)


def test_prev_result_is_merged(world: World) -> None:
    pod = world.pod()
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo", "sandbox": netns(pod)}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["10.96.0.10"]}}
    res = world.add(pod, prev=prev, conf=world.conf(dns={"nameservers": ["9.9.9.9"]}))
    assert [i["name"] for i in res["interfaces"]] == ["lo", "eth0"]
    assert res["ips"][0] == {"address": "127.0.0.1/8", "interface": 0}
    assert res["ips"][1]["interface"] == 1
    assert res["dns"] == {"nameservers": ["10.96.0.10"]}  # the chain's DNS is kept


def test_dns_from_the_config(world: World) -> None:
    res = world.add(world.pod(), conf=world.conf(dns={"nameservers": ["9.9.9.9"]}))
    assert res["dns"] == {"nameservers": ["9.9.9.9"]}


def test_cnitool_id_found_by_the_namespace(world: World) -> None:
    pod = world.pod()
    world.pod("other")
    cid = "cnitool-" + "3f" * 10
    res = world.run("ADD", cid, netns(pod)).ok()
    assert world.inspect(pod.id).endpoints["pods"].attached
    [rec] = world.records()
    assert rec.container_id == cid and rec.docker_id == pod.id
    assert res["interfaces"][0]["sandbox"] == netns(pod)


def test_ip_netns_bind_mount_of_a_container(world: World) -> None:
    pod = world.pod()
    world.ns.bind("/run/netns/pod", netns(pod))
    res = world.run("ADD", "cnitool-" + "a1" * 10, "/run/netns/pod").ok()
    assert res["interfaces"][0]["sandbox"] == "/run/netns/pod"
    assert world.links("/run/netns/pod")["eth0"].addresses == ("10.240.0.2/24",)


def test_netns_of_another_container_is_refused(world: World) -> None:
    pod, other = world.pod(), world.pod("other")
    out = world.run("ADD", pod.id, netns(other))
    assert "not the network namespace" in out.error(4)["details"]
    assert world.networks_of(pod.id) == ["none"] == world.networks_of(other.id)
    assert world.records() == [] and world.engine.called("connect") == []


def test_existing_interface_name_is_an_error(world: World) -> None:
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), ifname="lo")
    assert "lo already exists" in out.error(101)["details"]
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def test_container_already_on_the_network_is_not_ours(world: World) -> None:
    world.engine.api = RELEASES["28"].api
    c = world.pod("db", network_mode="pods")
    out = world.run("ADD", c.id, netns(c), ifname="net1")
    assert "not by cni2cnm" in out.error(101)["details"]
    assert world.engine.called("connect") == [] and world.records() == []


def test_add_twice_is_refused(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    out = world.run("ADD", pod.id, netns(pod), args=cri_args(pod))
    assert "already attached" in out.error(101)["details"]
    assert len(world.records()) == 1 and world.networks_of(pod.id) == ["pods"]


def test_an_interrupted_add_is_finished_first(world: World) -> None:
    pod = world.pod()
    world.engine.disconnect(pod.id, "none")
    world.engine.connect(pod.id, "pods")  # the killed ADD got this far
    with Store(world.state_dir) as store:
        store.put(Attachment(network="cninet", container_id=pod.id, ifname="eth0",
                             state=ADDING, docker_network="pods", network_name="pods",
                             network_id=world.engine.network("pods").id,  # type: ignore[union-attr]
                             docker_id=pod.id, docker_name="web", none_detached=True))
    res = world.run("ADD", pod.id, netns(pod))
    # 20.10 named the first interface eth0: its counter moved on, the new one is eth1.
    assert "Docker named the interface eth1" in res.error(102)["details"]
    assert world.records() == [] and world.networks_of(pod.id) == ["none"]


def test_unknown_network(world: World) -> None:
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=world.conf(network="no-such-net"))
    assert "no-such-net" in out.error(7)["details"]
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def test_unknown_container_in_container_mode(world: World) -> None:
    world.ns.create("/run/netns/foreign")
    cid = "0123456789ab" * 5 + "abcd"
    out = world.run("ADD", cid, "/run/netns/foreign", conf=world.conf(mode="container"))
    details = out.error(3)["details"]
    assert "0123456789ab" in details and "/run/netns/foreign" in details


def test_stopped_container_is_refused(world: World) -> None:
    pod = world.pod()
    path = netns(pod)
    world.ns.bind("/run/netns/kept", path)
    world.engine.stop(pod.id, exit_code=2)
    out = world.run("ADD", pod.id, "/run/netns/kept")
    assert "exited" in out.error(3)["details"]


def test_host_network_container_is_refused(world: World) -> None:
    c = world.pod("hostnet", network_mode="host")
    world.ns.create("/run/netns/elsewhere")
    out = world.run("ADD", c.id, "/run/netns/elsewhere", conf=world.conf(mode="container"))
    assert "not the network namespace" in out.error(4)["details"]
    out = world.run("ADD", c.id, netns(c))  # its namespace is the host's
    assert "node's own network namespace" in out.error(4)["details"]
    assert world.engine.called("connect") == [] and world.records() == []


def test_container_sharing_a_namespace_is_refused(world: World) -> None:
    pod = world.pod()
    c = world.pod("sidecar", network_mode=f"container:{pod.id}")
    out = world.run("ADD", c.id, netns(pod))
    assert "container:" in out.error(100)["details"]
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def test_none_mode_kept_when_detach_none_is_off(world: World) -> None:
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=world.conf(detachNone=False))
    assert "private (none) mode" in out.error(100)["details"]
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def test_host_namespace_is_never_touched(world: World) -> None:
    out = world.run("ADD", "cnitool-1", "/proc/1/ns/net")
    assert "node's own network namespace" in out.error(4)["details"]
    assert world.engine.calls == [] and world.records() == []
    assert set(world.links("/proc/1/ns/net")) == {"lo", "eth0"}


@pytest.mark.parametrize("path", ["/run/netns/missing", "/proc/self/ns/mnt"])
def test_netns_that_is_not_a_network_namespace(world: World, path: str) -> None:
    world.ns.not_netns.add("/proc/self/ns/mnt")
    out = world.run("ADD", "cnitool-1", path)
    assert "not a network namespace" in out.error(4)["details"]
    assert world.engine.calls == []


def test_state_dir_unusable(world: World, tmp_path: Path) -> None:
    pod = world.pod()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = world.run("ADD", pod.id, netns(pod), conf=world.conf(stateDir=str(blocker / "s")))
    assert str(blocker) in out.error(5)["details"]
    assert world.networks_of(pod.id) == ["none"]


def test_dual_stack(world: World) -> None:
    world.engine.add_network("dual", subnet="10.50.0.0/24", subnet6="fd00:50::/64")
    world.net_name = "dual"
    world.version = "1.1.0"
    pod = world.pod()
    res = world.add(pod)
    assert res["ips"] == [
        {"address": "10.50.0.2/24", "gateway": "10.50.0.1", "interface": 0},
        {"address": "fd00:50::2/64", "gateway": "fd00:50::1", "interface": 0}]
    assert {"dst": "::/0", "gw": "fd00:50::1", "priority": 1024, "table": 254,
            "scope": 0} in res["routes"]
    assert sorted(world.links(netns(pod))["eth0"].addresses) == ["10.50.0.2/24",
                                                                 "fd00:50::2/64"]


def test_internal_network_has_no_default_route(world: World) -> None:
    world.engine.add_network("quiet", subnet="10.60.0.0/24", internal=True)
    world.net_name = "quiet"
    res = world.add(world.pod())
    assert "routes" not in res and res["ips"][0]["gateway"] == "10.60.0.1"


def test_overlay_brings_the_gwbridge_interface(world: World) -> None:
    world.engine.role = "manager"
    world.engine.add_overlay("ovl")
    world.net_name = "ovl"
    pod = world.pod()
    res = world.add(pod)
    assert [i["name"] for i in res["interfaces"]] == ["eth0", "eth1"]
    assert res["ips"][0] == {"address": "10.70.0.2/24", "interface": 0}  # no gateway
    assert res["ips"][1]["interface"] == 1 and res["ips"][1]["gateway"] == "172.18.0.1"
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "172.18.0.1"}]
    world.run("DEL", pod.id, netns(pod), prev=res).silent()
    assert set(world.links(netns(pod))) == {"lo"}


def test_swarm_worker_connects_by_name_before_the_network_is_visible(world: World) -> None:
    world.engine.role = "worker"
    world.engine.add_overlay("ovl")
    world.net_name = "ovl"
    pod = world.pod()
    assert world.engine.network("ovl") is None
    world.add(pod)
    [rec] = world.records()
    assert rec.network_id == world.engine.network("ovl").id  # type: ignore[union-attr]


def test_swarm_worker_network_that_does_not_exist(world: World) -> None:
    world.engine.role = "worker"
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=world.conf(network="ghost"))
    assert "network ghost not found" in out.error(7)["details"]
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def test_swarm_network_not_attachable(world: World) -> None:
    world.engine.role = "manager"
    world.engine.add_overlay("svc", "10.71.0.0/24", attachable=False)
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=world.conf(network="svc"))
    assert "not manually attachable" in out.error(7)["details"]
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def test_remote_driver_reporting_no_mac(world: World) -> None:
    world.engine.add_network("remote", subnet="10.80.0.0/24", driver="weave",
                             reports_mac=False, gateway_service=False)
    world.net_name = "remote"
    pod = world.pod()
    res = world.add(pod)
    link = world.links(netns(pod))["eth0"]
    assert res["interfaces"][0]["mac"] == link.mac  # read in the namespace, found by IP
    assert res["ips"] == [{"address": "10.80.0.2/24", "interface": 0}]
    assert "routes" not in res


def test_a_vanished_network_between_lookup_and_connect(world: World) -> None:
    pod = world.pod()
    world.engine.fail("connect", NotFound("network pods not found", 404))
    out = world.run("ADD", pod.id, netns(pod))
    assert "network pods not found" in out.error(7)["details"]
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def interrupted(world: World, pod_id: str) -> None:
    """An ADD killed right after its connect: the intent row and the endpoint are left."""
    world.engine.then("connect", lambda: setattr(world.engine, "down", True))
    world.run("ADD", pod_id, netns(world.inspect(pod_id))).error(11)
    world.engine.down = False
    assert [r.state for r in world.records()] == [ADDING]


# 20.10: see ..._is_finished_first
@pytest.mark.parametrize("api", [RELEASES["28"].api, RELEASES["29.3"].api])
def test_an_interrupted_add_is_undone_then_done_again(world: World,
                                                      api: tuple[int, int]) -> None:
    world.engine.api = api
    pod = world.pod()
    interrupted(world, pod.id)
    res = world.add(pod)
    [rec] = world.records()
    assert rec.state == "attached" and res["interfaces"][0]["name"] == "eth0"
    assert world.networks_of(pod.id) == ["pods"]


def test_an_interrupted_add_that_cannot_be_undone_yet(world: World) -> None:
    pod = world.pod()
    interrupted(world, pod.id)
    world.engine.fail("disconnect", EngineUnavailable("connection refused"))
    out = world.run("ADD", pod.id, netns(pod))
    assert "could not be removed yet" in out.error(11)["details"]
    assert [r.state for r in world.records()] == [ADDING]
    assert world.inspect(pod.id).endpoints["pods"].attached  # nothing else was tried
    assert len(world.engine.called("connect")) == 1


def test_found_by_the_pod_infra_container_id(world: World) -> None:
    pod = world.pod()
    world.run("ADD", "runtime-own-id", netns(pod), args=cri_args(pod)).ok()
    [rec] = world.records()
    assert (rec.container_id, rec.docker_id) == ("runtime-own-id", pod.id)
    assert world.engine.called("running_container_ids") == []  # no scan was needed


def test_host_mode_container_of_an_engine_in_its_own_namespace(world: World) -> None:
    # The test engines run dockerd in a namespace of its own: "host" is dockerd's, not ours.
    world.ns.create("/run/netns/dockerd")
    world.engine.daemon_netns = "/run/netns/dockerd"
    c = world.pod("hostnet", network_mode="host")
    out = world.run("ADD", c.id, netns(c))
    assert "network mode host" in out.error(100)["details"]
    assert world.engine.called("connect") == [] and world.records() == []


def test_a_second_network_for_a_container_on_the_default_bridge(world: World) -> None:
    c = world.pod("app", network_mode="bridge")
    res = world.run("ADD", c.id, netns(c), ifname="eth1").ok()
    assert res["interfaces"][0]["name"] == "eth1"
    assert "routes" not in res  # the default route stays the bridge's, as Docker keeps it
    assert world.networks_of(c.id) == ["bridge", "pods"]
    world.run("DEL", c.id, netns(c), ifname="eth1", prev=res).silent()
    assert world.networks_of(c.id) == ["bridge"]
    assert set(world.links(netns(c))) == {"lo", "eth0"}


def test_add_records_the_intent_then_the_attachment(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[str, str, str]] = []
    put = Store.put

    def spy(self: Store, att: Attachment) -> Attachment:
        writes.append((att.state, att.docker_id, att.endpoint_id))
        return put(self, att)

    monkeypatch.setattr(Store, "put", spy)
    pod = world.pod()
    world.add(pod)
    [rec] = world.records()
    assert writes == [("adding", pod.id, ""), ("attached", pod.id, rec.endpoint_id)]
