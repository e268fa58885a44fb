"""A failed ADD leaves the container as it was and no record: at each step, on each engine
flavour; when the engine cannot be reached to undo, the intent stays for DEL or GC."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cni2cnm.engine import EngineUnavailable, Rejected
from cni2cnm.engine.versions import API_IFNAME, API_MAC_ON_CONNECT
from cni2cnm.plugin.detach import detach, rollback
from cni2cnm.store import ADDING, ATTACHED, Attachment, Store

from .conftest import World, cri_args, netns


def assert_untouched(world: World, pod_id: str) -> None:
    assert list(world.inspect(pod_id).endpoints) == ["none"]
    assert world.networks_of(pod_id) == ["none"] and world.records() == []
    assert set(world.links(netns(world.inspect(pod_id)))) == {"lo"}
    assert world.engine.network("pods").members == ()  # type: ignore[union-attr]


def test_connect_refused(any_world: World) -> None:
    pod = any_world.pod()
    any_world.engine.fail("connect", Rejected("driver failed programming external "
                                              "connectivity", 500))
    out = any_world.run("ADD", pod.id, netns(pod), args=cri_args(pod))
    assert "external connectivity" in out.error(100)["details"]
    assert_untouched(any_world, pod.id)


def vanish(world: World, path: str) -> None:
    ns = world.ns.get(path)
    ns.remove_link(ns.named("eth0").index)  # type: ignore[union-attr]


def strip(world: World, path: str) -> None:
    ns = world.ns.get(path)
    ns.update(ns.named("eth0"), addresses=())  # type: ignore[arg-type]


@pytest.mark.parametrize(("damage", "why"), [(vanish, "no interface in"),
                                             (strip, "lacks ['10.240.0.2/24']")],
                         ids=["interface-missing", "address-missing"])
def test_interface_not_as_docker_reported(world: World, damage: Callable[[World, str], None],
                                          why: str) -> None:
    pod = world.pod()
    world.engine.then("connect", lambda: damage(world, netns(pod)))
    assert why in world.run("ADD", pod.id, netns(pod)).error(102)["details"]
    assert_untouched(world, pod.id)


def test_endpoint_missing_after_connect(world: World) -> None:
    pod = world.pod()
    world.engine.then("connect", lambda: world.engine.disconnect(pod.id, "pods"))
    out = world.run("ADD", pod.id, netns(pod))
    assert "no endpoint" in out.error(100)["details"]
    assert_untouched(world, pod.id)


@pytest.mark.parametrize("error", [EngineUnavailable("read timed out"),
                                   Rejected("No such container", 500)])
def test_inspect_after_connect_fails(world: World, error: Exception) -> None:
    pod = world.pod()
    world.engine.fail("container", error, after="connect")  # type: ignore[arg-type]
    out = world.run("ADD", pod.id, netns(pod))
    assert out.error(11 if isinstance(error, EngineUnavailable) else 100)
    assert_untouched(world, pod.id)


def test_interface_name_docker_chose_on_20_10(world: World) -> None:
    pod = world.pod()
    # A first connect + disconnect moves Docker's counter on: the next interface is eth1.
    world.engine.disconnect(pod.id, "none")
    world.engine.connect(pod.id, "pods")
    world.engine.disconnect(pod.id, "pods")
    world.engine.connect(pod.id, "none")
    out = world.run("ADD", pod.id, netns(pod))
    details = out.error(102)["details"]
    assert "Docker named the interface eth1" in details and "1.48" in details
    assert_untouched(world, pod.id)


def test_unnameable_interface_refused_before_connecting(world: World) -> None:
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), ifname="net1")
    details = out.error(102)["details"]
    assert "net1" in details and "1.48" in details
    assert world.engine.called("connect") == [] and world.engine.called("disconnect") == []
    assert world.add(pod)["interfaces"][0]["name"] == "eth0"  # the counter is untouched


def test_any_interface_name_from_docker_28(any_world: World) -> None:
    if any_world.engine.api < API_IFNAME:
        assert any_world.run("ADD", (p := any_world.pod()).id, netns(p), ifname="net1").error(102)
        return
    pod = any_world.pod()
    res = any_world.run("ADD", pod.id, netns(pod), ifname="net1").ok()
    assert res["interfaces"][0]["name"] == "net1" and "net1" in any_world.links(netns(pod))


def test_mac_request_ignored_before_api_1_54(any_world: World) -> None:
    pod = any_world.pod()
    conf = any_world.conf(capabilities={"mac": True}, runtimeConfig={"mac": "02:42:aa:bb:cc:dd"})
    out = any_world.run("ADD", pod.id, netns(pod), conf=conf)
    if any_world.engine.api >= API_MAC_ON_CONNECT:
        assert out.ok()["interfaces"][0]["mac"] == "02:42:aa:bb:cc:dd"
        return
    details = out.error(102)["details"]
    assert "02:42:aa:bb:cc:dd" in details and "1.54" in details
    assert_untouched(any_world, pod.id)


# The engine goes away right after the nth call of a method: ADD says "try again later"; an
# intent recorded before stays for DEL (or GC) to finish once the engine answers again.
STEPS = [("container", 1, False), ("network", 1, False), ("disconnect", 1, True),
         ("connect", 1, True), ("container", 2, True)]


@pytest.mark.parametrize(("method", "nth", "recorded"), STEPS)
@pytest.mark.parametrize("cleanup", ["DEL", "GC"])
def test_engine_down_at_each_step(any_world: World, method: str, nth: int, recorded: bool,
                                  cleanup: str) -> None:
    world = any_world
    pod = world.pod()
    world.engine.then(method, lambda: setattr(world.engine, "down", True), nth=nth)
    out = world.run("ADD", pod.id, netns(pod), args=cri_args(pod))
    assert world.engine.base_url in out.error(11)["details"]
    assert [r.state for r in world.records()] == ([ADDING] if recorded else [])
    world.engine.down = False
    if cleanup == "DEL":
        world.run("DEL", pod.id, netns(pod)).silent()
    else:
        world.version = "1.1.0"
        world.run("GC").silent()
    assert world.records() == []
    assert "pods" not in world.networks_of(pod.id)
    assert world.engine.network("pods").members == ()  # type: ignore[union-attr]
    if not recorded:
        assert_untouched(world, pod.id)


# ---- rollback and detach, called directly --------------------------------------------


def intent(world: World, store: Store, **kw: object) -> Attachment:
    net = world.engine.network("pods")
    assert net is not None
    fields: dict[str, object] = {"network": "cninet", "container_id": "cid", "ifname": "eth0",
                                 "state": ADDING, "docker_network": "pods", "network_id": net.id,
                                 "network_name": "pods", "docker_id": "", "docker_name": "web"}
    fields.update(kw)
    return store.put(Attachment(**fields))  # type: ignore[arg-type]


def test_rollback_clears_the_stale_entry_of_a_failed_connect(world: World) -> None:
    pod = world.pod()
    world.engine.disconnect(pod.id, "none")
    with pytest.raises(Rejected):
        world.engine.connect(pod.id, "pods", ipv4="10.99.0.5")
    assert not world.inspect(pod.id).endpoints["pods"].attached  # 20.10's stale entry
    with Store(world.state_dir) as store:
        att = intent(world, store, docker_id=pod.id, none_detached=True)
        before = len(world.engine.calls)
        rollback(world.engine, world.ns, store, att)
        assert store.list() == []
    assert list(world.inspect(pod.id).endpoints) == ["none"]
    # disconnect (refused: stale), a plain connect over it, disconnect, `none` again
    assert [(m, a[1]) for m, a in world.engine.calls[before:] if "connect" in m] == [
        ("disconnect", att.network_id), ("connect", att.network_id),
        ("disconnect", att.network_id), ("connect", "none")]


def test_rollback_keeps_the_record_when_the_engine_is_gone(world: World) -> None:
    pod = world.pod()
    with Store(world.state_dir) as store:
        att = intent(world, store, docker_id=pod.id)
        world.engine.down = True
        rollback(world.engine, world.ns, store, att)
        [kept] = store.list()
    assert kept.state == ADDING


def test_detach_is_one_call_and_quiet_when_already_gone(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    [att] = world.records()
    before = len(world.engine.calls)
    detach(world.engine, world.ns, att)
    detach(world.engine, world.ns, att)  # not connected any more: still fine
    assert [m for m, _ in world.engine.calls[before:]] == ["disconnect", "disconnect"]
    assert "pods" not in world.inspect(pod.id).endpoints


def test_detach_of_a_lost_container_uses_its_name(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    [att] = world.records()
    world.engine.lose_container(pod.id)  # removed, its endpoint left behind in the network
    assert len(world.engine.network("pods").members) == 1  # type: ignore[union-attr]
    detach(world.engine, world.ns, att)
    assert [a[0] for a in world.engine.called("disconnect")[-2:]] == [pod.id, "web"]
    assert world.engine.network("pods").members == ()  # type: ignore[union-attr]


def test_detach_never_touches_a_new_container_of_the_same_name(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    [att] = world.records()
    world.engine.remove_container(pod.id)
    newcomer = world.pod("web", network_mode="pods")
    with Store(world.state_dir) as store:
        detach(world.engine, world.ns, att)
        store.delete(*att.key)
    assert world.inspect(newcomer.id).endpoints["pods"].attached
    assert att.state == ATTACHED
