"""DEL: detach what the store recorded; succeed when it is already gone; without a readable
store act only on evidence, never on a bystander."""

from __future__ import annotations

from pathlib import Path

import pytest

from cni2cnm.engine import SandboxSpec
from cni2cnm.plugin import proxy
from cni2cnm.store import Store

from ..fakes import ALL_VERSIONS
from .conftest import DEAD, HOST, World, cri_args, netns


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_del_after_add_in_every_version(world: World, version: str) -> None:
    world.version = version
    pod = world.pod()
    res = world.add(pod)
    for _ in range(2):  # DEL is called repeatedly: the second one finds nothing to do
        world.run("DEL", pod.id, netns(pod), args=cri_args(pod), prev=res).silent()
    assert "pods" not in world.inspect(pod.id).endpoints and world.records() == []
    assert "eth0" not in world.links(netns(pod))
    assert world.engine.network("pods").members == ()  # type: ignore[union-attr]


def test_del_without_any_record_calls_no_engine(world: World) -> None:
    pod = world.pod()
    before = len(world.engine.calls)
    world.run("DEL", pod.id, netns(pod)).silent()
    assert world.engine.calls[before:] == [] and world.networks_of(pod.id) == ["none"]


def test_del_after_container_removed(world: World) -> None:
    pod = world.pod()
    res = world.add(pod)
    path = netns(pod)
    world.engine.remove_container(pod.id)
    world.run("DEL", pod.id, path, prev=res).silent()
    assert world.records() == [] and world.engine.network("pods").members == ()  # type: ignore[union-attr]


def test_del_after_network_removed(world: World) -> None:
    pod = world.pod()
    res = world.add(pod)
    world.engine.disconnect(pod.id, "pods", force=True)
    world.engine.remove_network("pods")
    world.run("DEL", pod.id, netns(pod), prev=res).silent()
    assert world.records() == []


@pytest.mark.parametrize("path", ["", "/run/netns/gone"])
def test_del_with_empty_or_missing_netns(world: World, path: str) -> None:
    pod = world.pod()
    world.add(pod)
    world.run("DEL", pod.id, path).silent()
    assert "pods" not in world.inspect(pod.id).endpoints and world.records() == []


def test_del_with_engine_unreachable_keeps_the_record(world: World) -> None:
    pod = world.pod()
    res = world.add(pod)
    out = world.run("DEL", pod.id, netns(pod), prev=res, conf=world.conf(dockerHost=DEAD))
    assert "no-engine.sock" in out.error(11)["details"]
    assert [a.state for a in world.records()] == ["deleting"]
    world.run("DEL", pod.id, netns(pod), prev=res).silent()
    assert "pods" not in world.inspect(pod.id).endpoints and world.records() == []


def test_del_finds_the_engine_the_attachment_was_made_on(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    world.run("DEL", pod.id, netns(pod), env={"DOCKER_HOST": ""}).silent()
    assert world.factory_calls[-1] == HOST
    assert "pods" not in world.inspect(pod.id).endpoints


def test_del_does_not_touch_a_connection_it_did_not_make(world: World) -> None:
    c = world.pod("db", network_mode="pods")
    world.run("ADD", c.id, netns(c)).error(101)  # eth0 is there already
    world.run("DEL", c.id, netns(c)).silent()
    assert world.inspect(c.id).endpoints["pods"].attached


def test_del_never_detaches_a_new_container_of_a_reused_name(world: World) -> None:
    pod = world.pod("web")
    res = world.add(pod)
    world.engine.remove_container(pod.id)
    newcomer = world.pod("web", network_mode="pods")
    world.run("DEL", pod.id, netns(pod), prev=res).silent()
    assert world.inspect(newcomer.id).endpoints["pods"].attached
    assert world.records() == []


def test_del_of_an_interrupted_add(world: World) -> None:
    pod = world.pod()
    world.engine.then("connect", lambda: setattr(world.engine, "down", True))
    world.run("ADD", pod.id, netns(pod)).error(11)
    world.engine.down = False
    world.run("DEL", pod.id, netns(pod)).silent()
    assert "pods" not in world.inspect(pod.id).endpoints and world.records() == []


# ---- without a readable store --------------------------------------------------------


def lose_database(world: World) -> None:
    for p in Path(world.state_dir).glob("attachments.db*"):
        p.unlink()  # the store-id marker stays: the store is known to be lost


def test_unrecorded_del_detaches_the_container_that_runs_in_cni_netns(world: World) -> None:
    pod, bystander = world.pod(), world.pod("bystander")
    world.add(pod)
    world.add(bystander)
    lose_database(world)
    world.run("DEL", pod.id, netns(pod)).silent()
    assert "pods" not in world.inspect(pod.id).endpoints
    assert world.inspect(bystander.id).endpoints["pods"].attached


def test_unrecorded_del_with_a_runtime_id_and_the_namespace(world: World) -> None:
    pod = world.pod()
    world.run("ADD", "cnitool-" + "ab" * 10, netns(pod)).ok()
    lose_database(world)
    world.run("DEL", "cnitool-" + "ab" * 10, netns(pod)).silent()
    assert "pods" not in world.inspect(pod.id).endpoints


@pytest.mark.parametrize(("runtime_id", "where"), [
    ("pod", "other-netns"), ("pod", "empty"), ("pod", "missing"), ("pod", "foreign"),
    ("cnitool-9", "foreign"), ("cnitool-9", "missing")])
def test_unrecorded_del_never_detaches_a_bystander(world: World, runtime_id: str,
                                                   where: str) -> None:
    pod, bystander = world.pod(), world.pod("bystander")
    world.add(pod)
    world.add(bystander)
    lose_database(world)
    world.ns.create("/run/netns/foreign")
    path = {"other-netns": netns(bystander), "empty": "", "missing": "/run/netns/gone",
            "foreign": "/run/netns/foreign"}[where]
    world.run("DEL", pod.id if runtime_id == "pod" else runtime_id, path).silent()
    assert world.inspect(pod.id).endpoints["pods"].attached
    assert world.inspect(bystander.id).endpoints["pods"].attached


def test_unrecorded_del_removes_only_this_store_s_sandbox(world: World) -> None:
    ours = Store(world.state_dir).open()
    ours.close()
    store_id = Store(world.state_dir).identity()
    for sid in (store_id, "another-store"):
        world.engine.run_sandbox(SandboxSpec(
            name=f"sb-{sid}", image="pause", network="pods",
            labels=proxy.sandbox_labels("cninet", "cnitool-1", "eth0", "/run/netns/x", sid)))
    lose_database(world)
    world.run("DEL", "cnitool-1", "/run/netns/x").silent()
    assert world.engine.container(f"sb-{store_id}") is None
    assert world.engine.container("sb-another-store") is not None


def test_del_with_a_store_that_cannot_be_read_and_engine_down(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    lose_database(world)
    out = world.run("DEL", pod.id, netns(pod), conf=world.conf(dockerHost=DEAD))
    out.error(11)
    assert world.inspect(pod.id).endpoints["pods"].attached


def test_unrecorded_del_keeps_a_connection_docker_made_at_create(world: World) -> None:
    # `docker run --network pods`: the endpoint is Docker's own, whatever the runtime asks.
    c = world.pod("db", network_mode="pods")
    world.pod("other")
    world.add(world.inspect("other"))
    lose_database(world)
    world.run("DEL", c.id, netns(c)).silent()
    assert world.inspect(c.id).endpoints["pods"].attached
