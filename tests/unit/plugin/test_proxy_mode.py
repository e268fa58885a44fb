"""Proxy mode: a sandbox container of the plugin's own on the Docker network, its interface
moved into a namespace Docker does not own (and back on DEL)."""

from __future__ import annotations

from typing import Any

import pytest

from cni2cnm.engine import CONTAINER_NAME, Labelled
from cni2cnm.engine.versions import API_MAC_AT_CREATE
from cni2cnm.netns import RouteEntry
from cni2cnm.plugin import proxy
from cni2cnm.store import Attachment, Store, StoreError

from ..fakes import ALL_VERSIONS
from .conftest import World

CID = "cnitool-" + "7c" * 10
NS = "/run/netns/cni-1"
IMAGE = "registry.k8s.io/pause:3.10"


@pytest.fixture
def pw(world: World) -> World:
    world.ns.create(NS)
    return world


def sandboxes(world: World) -> list[Labelled]:
    return world.engine.containers_with_label(f"{proxy.LABEL_NETWORK}=cninet")


def ask(world: World, *ips: str, **kw: Any) -> dict[str, Any]:
    return world.conf(capabilities={"ips": True}, runtimeConfig={"ips": list(ips)}, **kw)


def assert_clean(world: World) -> None:
    assert sandboxes(world) == [] and world.records() == []
    assert set(world.links(NS)) == {"lo"}
    assert world.engine.network("pods").members == ()  # type: ignore[union-attr]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_check_del(pw: World, version: str) -> None:
    pw.version = version
    res = pw.run("ADD", CID, NS).ok()
    [sb] = sandboxes(pw)
    sandbox = pw.inspect(sb.id)
    ep = sandbox.endpoints["pods"]
    eth0 = pw.links(NS)["eth0"]
    assert eth0.mac == ep.mac and eth0.addresses == ("10.240.0.2/24",) and eth0.up
    assert "eth0" not in pw.links(f"/proc/{sandbox.pid}/ns/net")  # moved out
    if version in ("0.1.0", "0.2.0"):
        assert res["ip4"] == {"ip": "10.240.0.2/24", "gateway": "10.240.0.1",
                              "routes": [{"dst": "0.0.0.0/0", "gw": "10.240.0.1"}]}
    else:
        assert res["interfaces"][0] == {"name": "eth0", "mac": ep.mac, "sandbox": NS,
                                        **({"mtu": 1500} if version == "1.1.0" else {})}
        route = {"dst": "0.0.0.0/0", "gw": "10.240.0.1"}
        if version == "1.1.0":
            route.update(table=254, scope=0)
        assert res["routes"] == [route]
    [rec] = pw.records()
    assert (rec.mode, rec.sandbox_id, rec.sandbox_ifname) == ("proxy", sb.id, "eth0")
    assert sb.labels[proxy.LABEL_STORE] and sb.labels[proxy.LABEL_NETNS] == NS
    if version >= "0.4.0":
        pw.run("CHECK", CID, NS, prev=res).silent()
    pw.run("DEL", CID, NS, prev=res).silent()
    assert_clean(pw)


def test_static_dual_stack_with_any_interface_name(pw: World) -> None:
    pw.engine.add_network("dual", subnet="10.50.0.0/24", subnet6="fd00:50::/64")
    pw.net_name = "dual"
    res = pw.run("ADD", CID, NS, ifname="net1",
                 conf=ask(pw, "10.50.0.44", "fd00:50::44", mode="proxy")).ok()
    assert res["interfaces"][0]["name"] == "net1"  # named by the plugin, even on 20.10
    assert sorted(pw.links(NS)["net1"].addresses) == ["10.50.0.44/24", "fd00:50::44/64"]
    assert {"dst": "::/0", "gw": "fd00:50::1"} in res["routes"]
    pw.run("CHECK", CID, NS, ifname="net1", prev=res).silent()
    pw.run("DEL", CID, NS, ifname="net1", prev=res).silent()
    assert sandboxes(pw) == [] and "net1" not in pw.links(NS)


def test_del_with_the_namespace_deleted_and_twice(pw: World) -> None:
    res = pw.run("ADD", CID, NS).ok()
    pw.ns.unlink(NS)
    pw.run("DEL", CID, NS, prev=res).silent()
    pw.run("DEL", CID, NS, prev=res).silent()
    assert sandboxes(pw) == [] and pw.records() == []
    pw.ns.create("/run/netns/cni-2")
    again = pw.run("ADD", CID, "/run/netns/cni-2",
                   conf=ask(pw, res["ips"][0]["address"])).ok()
    assert again["ips"][0]["address"] == res["ips"][0]["address"]  # the address was freed


def test_del_after_the_sandbox_was_removed_by_hand(pw: World) -> None:
    res = pw.run("ADD", CID, NS).ok()
    pw.engine.remove_container(sandboxes(pw)[0].id)
    pw.run("DEL", CID, NS, prev=res).silent()
    assert_clean(pw)


def test_del_with_the_engine_down_keeps_the_record(pw: World) -> None:
    res = pw.run("ADD", CID, NS).ok()
    pw.engine.down = True
    pw.run("DEL", CID, NS, prev=res).error(11)
    pw.engine.down = False
    assert len(pw.records()) == 1
    pw.run("DEL", CID, NS, prev=res).silent()
    assert_clean(pw)


def test_check_fails_when_the_sandbox_is_gone(pw: World) -> None:
    res = pw.run("ADD", CID, NS).ok()
    pw.engine.remove_container(sandboxes(pw)[0].id)
    assert "has ended" in pw.run("CHECK", CID, NS, prev=res).error(103)["details"]


def test_check_fails_when_the_default_route_was_removed(pw: World) -> None:
    res = pw.run("ADD", CID, NS).ok()
    pw.ns.get(NS).routes.clear()
    details = pw.run("CHECK", CID, NS, prev=res).error(103)["details"]
    assert "routes missing" in details and "0.0.0.0/0 via 10.240.0.1" in details


def test_gc_removes_a_stale_proxy_attachment(pw: World) -> None:
    pw.version = "1.1.0"
    pw.run("ADD", CID, NS).ok()
    pw.run("GC").silent()
    assert_clean(pw)


def test_gc_keeps_a_valid_one(pw: World) -> None:
    pw.version = "1.1.0"
    pw.run("ADD", CID, NS).ok()
    pw.run("GC", conf=pw.conf(**{"cni.dev/valid-attachments": [
        {"containerID": CID, "ifname": "eth0"}]})).silent()
    assert len(sandboxes(pw)) == 1 and len(pw.records()) == 1


def test_container_mode_refuses_foreign_namespaces(pw: World) -> None:
    out = pw.run("ADD", CID, NS, conf=pw.conf(mode="container"))
    assert NS in out.error(3)["details"]
    assert_clean(pw)


def test_mac_request(any_world: World) -> None:
    world = any_world
    world.ns.create(NS)
    conf = world.conf(capabilities={"mac": True}, runtimeConfig={"mac": "02:42:aa:bb:cc:01"})
    out = world.run("ADD", CID, NS, conf=conf)
    if world.engine.api >= API_MAC_AT_CREATE:  # applied at container create
        assert out.ok()["interfaces"][0]["mac"] == "02:42:aa:bb:cc:01"
        return
    assert "1.54" in out.error(102)["details"]
    assert_clean(world)


def test_sandbox_image_whose_command_exits(pw: World) -> None:
    pw.engine.exiting_images["busybox"] = 1
    out = pw.run("ADD", CID, NS, conf=pw.conf(sandboxImage="busybox"))
    details = out.error(100)["details"]
    assert "exited with code 1" in details and "sandboxImage" in details
    assert_clean(pw)


def test_sandbox_dying_during_the_move(pw: World) -> None:
    def die_at_next_inspect() -> None:
        [sb] = sandboxes(pw)
        pw.engine.then("container", lambda: pw.engine.stop(sb.id, exit_code=137, oom=True))

    pw.engine.then("run_sandbox", die_at_next_inspect)
    details = pw.run("ADD", CID, NS).error(100)["details"]
    assert "exited with code 137" in details and "lack of memory" in details
    assert_clean(pw)


def test_move_failure_is_an_io_failure_and_rolled_back(pw: World) -> None:
    pw.ns.fail_moves = "Operation not permitted"
    assert "Operation not permitted" in pw.run("ADD", CID, NS).error(5)["details"]
    assert_clean(pw)


def test_a_foreign_container_with_the_sandbox_name_is_never_removed(pw: World) -> None:
    name = proxy.sandbox_name("cninet", CID, "eth0")
    foreign = pw.engine.create_container(name)
    out = pw.run("ADD", CID, NS)
    assert "is already in use" in out.error(101)["details"]
    assert pw.engine.container(foreign) is not None and pw.records() == []


@pytest.mark.parametrize("ifname", ["net@1", "net+1", "ä1", "a#1"])
def test_sandbox_names_from_valid_but_unusual_interface_names(pw: World, ifname: str) -> None:
    """Any CNI_IFNAME the spec allows makes a container name dockerd accepts."""
    res = pw.run("ADD", CID, NS, ifname=ifname).ok()
    assert res["interfaces"][0]["name"] == ifname
    [rec] = pw.records()
    assert CONTAINER_NAME.fullmatch(rec.sandbox_name), rec.sandbox_name
    pw.run("DEL", CID, NS, ifname=ifname).silent()
    assert_clean(pw)


def test_sandbox_image_that_cannot_be_pulled(pw: World) -> None:
    pw.engine.unpullable.add("nope:1")
    out = pw.run("ADD", CID, NS, conf=pw.conf(sandboxImage="nope:1"))
    assert "pull access denied" in out.error(7)["details"]
    assert_clean(pw)


def test_taken_static_address_refused_before_the_sandbox(pw: World) -> None:
    pw.run("ADD", CID, NS).ok()
    pw.ns.create("/run/netns/cni-2")
    out = pw.run("ADD", "cnitool-2", "/run/netns/cni-2", conf=ask(pw, "10.240.0.2"))
    assert "already in use" in out.error(7)["details"]
    assert len(sandboxes(pw)) == 1 and IMAGE in pw.engine.images


def test_proxy_on_a_swarm_worker_before_the_network_is_visible(pw: World) -> None:
    pw.engine.role = "worker"
    pw.engine.add_overlay("ovl")
    pw.net_name = "ovl"
    assert pw.engine.network("ovl") is None
    res = pw.run("ADD", CID, NS).ok()
    assert pw.links(NS)["eth0"].mtu == 1450
    [rec] = pw.records()
    assert rec.network_id == pw.engine.network("ovl").id  # type: ignore[union-attr]
    pw.run("DEL", CID, NS, prev=res).silent()
    assert sandboxes(pw) == [] and pw.engine.network("ovl") is None  # invisible again


def test_sandbox_that_the_engine_cannot_start_is_removed(pw: World) -> None:
    # The default bridge lists its subnet, so preflight lets the address through; dockerd
    # refuses it when the sandbox starts, which leaves a created container behind.
    pw.net_name = "bridge"
    out = pw.run("ADD", CID, NS, conf=ask(pw, "172.17.0.50"))
    assert "supported on user defined networks only" in out.error(7)["details"]
    assert pw.engine.containers == {} and pw.records() == []


def test_secondary_network_into_a_namespace_with_a_default_route(pw: World) -> None:
    # cni2cnm as a second network (net1): the namespace has its primary interface and default
    # route already, as Docker's own sandboxes do after a first network. The primary's
    # default route stays; the interface comes with its address, as in container mode.
    ns = pw.ns.get(NS)
    eth0 = ns.add_link("eth0", mac="0a:58:0a:f4:00:05", addresses=("10.244.0.5/24",))
    primary = RouteEntry(dst="0.0.0.0/0", gw="10.244.0.1", oif=eth0.index, table=254, scope=0)
    ns.routes.append(primary)
    res = pw.run("ADD", CID, NS, ifname="net1").ok()
    assert pw.links(NS)["net1"].addresses == ("10.240.0.2/24",)
    assert ns.routes == [primary] and "routes" not in res
    pw.run("CHECK", CID, NS, ifname="net1", prev=res).silent()
    pw.run("DEL", CID, NS, ifname="net1", prev=res).silent()
    assert set(pw.links(NS)) == {"lo", "eth0"} and ns.routes == [primary]


def test_an_interrupted_proxy_add_is_undone_before_the_next(pw: World) -> None:
    pw.engine.then("run_sandbox", lambda: setattr(pw.engine, "down", True))
    pw.run("ADD", CID, NS).error(11)
    pw.engine.down = False
    [first] = sandboxes(pw)
    assert [r.state for r in pw.records()] == ["adding"]
    pw.run("ADD", CID, NS).ok()
    [second] = sandboxes(pw)
    assert second.id != first.id and [r.state for r in pw.records()] == ["attached"]


def test_del_removes_the_sandbox_even_when_the_move_back_fails(pw: World) -> None:
    res = pw.run("ADD", CID, NS).ok()
    pw.ns.fail_moves = "Operation not permitted"
    pw.run("DEL", CID, NS, prev=res).silent()
    assert_clean(pw)  # removing the sandbox took the interface with it


@pytest.mark.parametrize(("keys", "limits"), [
    ({}, {"pids": 16, "memory": 16 << 20}),
    ({"sandboxPidsLimit": 4, "sandboxMemoryMiB": 6}, {"pids": 4, "memory": 6 << 20}),
    ({"sandboxPidsLimit": 0, "sandboxMemoryMiB": 0}, {"pids": 0, "memory": 0}),
])
def test_sandboxes_have_pids_and_memory_limits(pw: World, keys: dict[str, int],
                                               limits: dict[str, int]) -> None:
    pw.run("ADD", CID, NS, conf=pw.conf(**keys)).ok()
    [sb] = sandboxes(pw)
    assert pw.engine.containers[sb.id].limits == limits


@pytest.mark.parametrize("keys", [{"sandboxMemoryMiB": 5}, {"sandboxPidsLimit": -1},
                                  {"sandboxPidsLimit": "16"}, {"sandboxMemoryMiB": 1.5}])
def test_unusable_sandbox_limits_are_code_7(pw: World, keys: dict[str, Any]) -> None:
    pw.run("ADD", CID, NS, conf=pw.conf(**keys)).error(7)
    assert_clean(pw)


def test_a_busy_namespace_costs_the_same_route_dumps(pw: World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ADD into a namespace holding many interfaces (a second network on a running pod) reads
    its routes a fixed number of times, not once per interface."""
    from cni2cnm.testing.fake_netns import FakeNetns

    dumps: list[int | None] = []
    real = FakeNetns.routes

    def counted(self: FakeNetns, oif: int | None = None) -> list[RouteEntry]:
        dumps.append(oif)
        return real(self, oif)

    monkeypatch.setattr(FakeNetns, "routes", counted)
    quiet = "/run/netns/quiet"
    pw.ns.create(quiet)
    pw.run("ADD", CID, quiet).ok()
    empty = len(dumps)
    busy = pw.ns.get(NS)
    for i in range(300):
        link = busy.add_link(f"veth{i}", mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")
        busy.routes.append(RouteEntry(dst=f"10.99.{i // 256}.{i % 256}/32", gw=None,
                                      oif=link.index))
    dumps.clear()
    pw.run("ADD", "other" + CID, NS).ok()
    assert len(dumps) == empty <= 4
    assert len(busy.routes) == 301  # theirs kept, the default route added


@pytest.mark.parametrize("swap_to_host", [False, True], ids=["other-pod", "host"])
def test_add_changes_only_the_namespace_it_checked(pw: World, swap_to_host: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """CNI_NETNS names namespace A when ADD checks it and V once the sandbox exists (a bind
    mount replaced, a PID reused): the interface, its address and routes go to A only."""
    first = pw.ns.get(NS)
    victim = pw.ns.host if swap_to_host else pw.ns.create("/run/netns/victim")
    before = (dict(victim.links), list(victim.routes))
    real_run = pw.engine.run_sandbox

    def run_then_swap(spec: Any) -> str:
        sandbox = real_run(spec)
        pw.ns.paths[NS] = victim  # the path now names another namespace
        return sandbox

    monkeypatch.setattr(pw.engine, "run_sandbox", run_then_swap)
    res = pw.run("ADD", CID, NS).ok()
    assert first.named("eth0") is not None and first.has_default(4)
    assert (dict(victim.links), list(victim.routes)) == before
    assert res["interfaces"][0]["sandbox"] == NS
    # CHECK and DEL open the path once and see it is not the namespace ADD attached
    assert "no longer the network namespace" in pw.run("CHECK", CID, NS, prev=res).error(
        103)["details"]
    if not swap_to_host:
        victim.add_link("eth0", mac=first.named("eth0").mac)  # type: ignore[union-attr]
    from cni2cnm.testing.fake_netns import FakeNetns

    moves: list[str] = []
    monkeypatch.setattr(FakeNetns, "move_link", lambda self, *a: moves.append(self.path))
    pw.run("DEL", CID, NS, prev=res).silent()
    assert sandboxes(pw) == [] and pw.records() == [] and moves == []


def test_add_records_each_step_before_the_next_changes_anything(
        pw: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """intent -> the sandbox (DEL removes it) -> its MAC (DEL finds the moved interface by
    it) -> attached: the rows an interrupted ADD leaves for DEL and GC."""
    writes: list[tuple[str, bool, str, str, str]] = []
    put = Store.put

    def spy(self: Store, att: Attachment) -> Attachment:
        writes.append((att.state, bool(att.sandbox_id), att.mac, att.interface,
                       att.sandbox_ifname))
        return put(self, att)

    monkeypatch.setattr(Store, "put", spy)
    pw.run("ADD", CID, NS).ok()
    [rec] = pw.records()
    assert writes == [("adding", False, "", "", ""), ("adding", True, "", "", ""),
                      ("adding", True, rec.mac, "", ""),
                      ("attached", True, rec.mac, "eth0", rec.sandbox_ifname)]
    assert rec.mac and rec.sandbox_ifname


def test_when_the_write_of_attached_fails_the_rollback_removes_the_moved_interface(
        pw: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """ADD's last write ("attached") fails, and the sandbox has ended meanwhile: the
    interface cannot go back, so the rollback deletes it from the pod by the name and MAC
    the move gave it (its address is free in Docker again)."""
    put = Store.put

    def failing(self: Store, att: Attachment) -> Attachment:
        if att.state == "attached":
            pw.engine.stop(att.sandbox_id)
            raise StoreError(f"cannot write state database {self.path}: disk I/O error",
                             self.path)
        return put(self, att)

    monkeypatch.setattr(Store, "put", failing)
    assert "disk I/O error" in pw.run("ADD", CID, NS).error(5)["details"]
    assert_clean(pw)
