"""GC (sweep what the runtime no longer lists, and this store's orphan sandboxes) and
STATUS (can ADD be served?), CNI 1.1.0."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cni2cnm.engine import Container, Rejected, SandboxSpec
from cni2cnm.engine.versions import MIN_API
from cni2cnm.plugin import proxy
from cni2cnm.store import Store
from cni2cnm.testing import FakeEngine

from .conftest import DEAD, World, cri_args, netns


@pytest.fixture(autouse=True)
def v110(world: World) -> None:
    world.version = "1.1.0"


def attach(world: World, *names: str) -> list[Container]:
    pods = [world.pod(n) for n in names]
    for p in pods:
        world.run("ADD", p.id, netns(p), args=cri_args(p)).ok()
    return pods


def valid(*pods: Container) -> list[dict[str, str]]:
    return [{"containerID": p.id, "ifname": "eth0"} for p in pods]


def gc(world: World, **keys: Any) -> Any:
    return world.run("GC", conf=world.conf(**keys))


def attached(world: World, c: Container, net: str = "pods") -> bool:
    ep = world.inspect(c.id).endpoints.get(net)
    return ep is not None and ep.attached


def test_gc_removes_what_is_not_listed(world: World) -> None:
    keep, drop = attach(world, "keep", "drop")
    gc(world, **{"cni.dev/valid-attachments": valid(keep)}).silent()
    assert [r.docker_id for r in world.records()] == [keep.id]
    assert attached(world, keep) and not attached(world, drop)


def test_gc_reads_the_older_attachments_key(world: World) -> None:
    a, b, c = attach(world, "a1", "b1", "c1")
    gc(world, **{"cni.dev/attachments": valid(a), "cni.dev/valid-attachments": valid(b)}
       ).silent()
    assert sorted(r.docker_id for r in world.records()) == sorted([a.id, b.id])
    assert not attached(world, c)


@pytest.mark.parametrize("name", ["attachments", "valid_attachments"])
def test_gc_ignores_the_python_names_of_the_attachment_keys(world: World, name: str) -> None:
    # Not a key of the spec (pydantic 2.11-2.13 read it as one): an unknown key, kept and
    # ignored; with neither cni.dev/ key nothing is valid, so GC sweeps the listed pod too.
    listed, other = attach(world, "listed", "other")
    gc(world, **{name: valid(listed)}).silent()
    assert world.records() == []
    assert not attached(world, listed) and not attached(world, other)


def test_gc_without_a_list_sweeps_only_this_network(world: World) -> None:
    world.engine.add_network("other", subnet="10.241.0.0/24")
    [theirs] = attach(world, "theirs")
    # the same stateDir, another CNI network: not this GC's to sweep
    with Store(world.state_dir) as store:
        [rec] = store.list()
        store.delete(*rec.key)
        store.put(dataclasses.replace(rec, network="othernet", docker_network="other"))
    pods = attach(world, "p1", "p2")
    gc(world).silent()
    assert [r.docker_id for r in world.records()] == [theirs.id]
    assert all(not attached(world, p) for p in pods)


def test_gc_drops_records_of_removed_containers(world: World) -> None:
    [gone] = attach(world, "gone")
    world.engine.remove_container(gone.id)
    gc(world, **{"cni.dev/valid-attachments": valid(gone)}).silent()
    assert world.records() == []


def test_gc_reports_failures_together_and_keeps_going(world: World) -> None:
    pods = attach(world, "p1", "p2")
    out = gc(world, dockerHost=DEAD)
    doc = out.error(11)
    assert "GC could not finish" in doc["msg"] and all(p.id in doc["details"] for p in pods)
    assert len(world.records()) == 2
    gc(world).silent()
    assert world.records() == []


def test_gc_refusal_of_one_attachment_does_not_stop_the_others(world: World) -> None:
    a, b = attach(world, "a1", "b1")
    world.engine.fail("disconnect", Rejected("driver failed", 500))
    doc = gc(world).error(100)
    assert "driver failed" in doc["details"] and "1 problem" in doc["msg"]
    assert [r.docker_id for r in world.records()] == [a.id]
    assert attached(world, a) and not attached(world, b)


def test_gc_needs_cni_1_1_0(world: World) -> None:
    gc(world, cniVersion="1.0.0").error(1)


def sandbox(world: World, name: str, store_id: str, cid: str = "cnitool-1") -> str:
    return world.engine.run_sandbox(SandboxSpec(
        name=name, image="pause", network="pods",
        labels=proxy.sandbox_labels("cninet", cid, "eth0", "/run/netns/x", store_id)))


def test_gc_sweeps_only_this_store_s_orphan_sandboxes(world: World, tmp_path: Path) -> None:
    Store(world.state_dir).open().close()
    ours = sandbox(world, "ours", Store(world.state_dir).identity())
    valid_one = sandbox(world, "valid", Store(world.state_dir).identity(), cid="cnitool-2")
    theirs = sandbox(world, "theirs", "another-store")
    gc(world, **{"cni.dev/valid-attachments": [{"containerID": "cnitool-2",
                                                "ifname": "eth0"}]}).silent()
    assert world.engine.container(ours) is None
    assert world.engine.container(valid_one) is not None
    assert world.engine.container(theirs) is not None
    assert len(world.engine.network("pods").members) == 2  # type: ignore[union-attr]


def test_gc_with_a_fresh_store_sweeps_no_sandbox(world: World, tmp_path: Path) -> None:
    # A stateDir that never made a sandbox has no identity in common with any.
    Store(world.state_dir).open().close()
    kept = sandbox(world, "kept", Store(world.state_dir).identity())
    fresh = World(ns=world.ns, engine=world.engine, state_dir=str(tmp_path / "fresh"),
                  version="1.1.0", engines=world.engines)
    fresh.run("GC", conf=fresh.conf()).silent()
    assert world.engine.container(kept) is not None


# ---- STATUS ------------------------------------------------------------------------


def status(world: World, **conf: Any) -> Any:
    return world.run("STATUS", conf=world.conf(**conf))


def test_status_ok(any_world: World) -> None:
    any_world.version = "1.1.0"
    status(any_world).silent()


def test_status_engine_unreachable(world: World) -> None:
    details = world.run("STATUS", env={"DOCKER_HOST": DEAD}).error(50)["details"]
    assert "no-engine.sock" in details and "connection refused" in details


def test_status_engine_too_old(world: World) -> None:
    world.engine.api = too_old = (MIN_API[0], MIN_API[1] - 1)
    assert f"API {too_old[0]}.{too_old[1]}" in status(world).error(50)["details"]


def test_status_network_missing(world: World) -> None:
    assert "no-such-net" in status(world, network="no-such-net").error(50)["details"]


def test_status_network_removed_with_attachments_recorded(world: World) -> None:
    [pod] = attach(world, "pod")
    world.engine.disconnect(pod.id, "pods", force=True)
    world.engine.remove_network("pods")
    assert "1 recorded attachment" in status(world).error(51)["details"]


def test_status_on_a_swarm_worker_before_the_first_attachment(world: World) -> None:
    world.engine.role = "worker"
    world.engine.add_overlay("ovl")
    status(world, network="ovl").silent()


def test_status_state_dir_unusable(world: World, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert str(blocker) in status(world, stateDir=str(blocker / "s")).error(50)["details"]


def test_status_needs_cni_1_1_0(world: World) -> None:
    status(world, cniVersion="1.0.0").error(1)


def test_gc_asks_the_engine_each_attachment_was_made_on(world: World) -> None:
    other = FakeEngine(world.ns, base_url="unix:///other/docker.sock", seed=2)
    other.add_network("pods", subnet="10.240.0.0/24")
    world.engines[other.base_url] = other
    here = attach(world, "here")[0]
    cid = other.create_container("there")
    there = other.container(cid)
    assert there is not None
    world.run("ADD", there.id, netns(there), env={"DOCKER_HOST": other.base_url}).ok()
    gc(world).silent()  # run with DOCKER_HOST = the first engine
    assert world.records() == []
    assert not attached(world, here)
    assert "pods" not in (other.container(cid).endpoints)  # type: ignore[union-attr]


def test_gc_drops_a_valid_proxy_attachment_whose_namespace_is_gone(world: World) -> None:
    world.ns.create("/run/netns/p")
    world.run("ADD", "cnitool-1", "/run/netns/p").ok()
    world.ns.unlink("/run/netns/p")
    gc(world, **{"cni.dev/valid-attachments": [{"containerID": "cnitool-1",
                                                "ifname": "eth0"}]}).silent()
    assert world.records() == [] and world.engine.containers_with_label(
        f"{proxy.LABEL_NETWORK}=cninet") == []
