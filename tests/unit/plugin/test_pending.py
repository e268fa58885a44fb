"""What cni2cnm finishes without the runtime (plugin/pending.py): DELs recorded as pending
while the engine did not answer, and proxy pods whose sandbox ended."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cni2cnm.cni.errors import CNIError, without_misread_phrases
from cni2cnm.engine import Rejected
from cni2cnm.plugin import DockerPlugin
from cni2cnm.store import Store

from .conftest import FLAVOURS, World, make_world, netns
from .test_proxy_mode import CID, NS, sandboxes

PHRASES = ("no such file or directory", "not found")  # runtimes: "already gone"


def no_misread_phrase(doc: dict[str, object]) -> bool:
    text = json.dumps(doc).lower()
    return not any(p in text for p in PHRASES)


def pending_del(world: World) -> tuple[object, dict[str, object]]:
    """A pod whose DEL came while the engine was down."""
    pod = world.pod()
    res = world.add(pod)
    world.engine.down = True
    doc = world.run("DEL", pod.id, "", prev=res).error(11)
    world.engine.down = False
    return pod, doc


def test_del_without_engine_is_recorded_pending_and_says_so(world: World) -> None:
    pod, doc = pending_del(world)
    assert "recorded this DEL" in str(doc["details"]) and no_misread_phrase(doc)
    assert [a.state for a in world.records()] == ["deleting"]
    assert "pods" in world.inspect(pod.id).endpoints  # nothing done yet


def test_check_of_a_pending_del_says_so(world: World) -> None:
    pod = world.pod()
    res = world.add(pod)
    world.engine.down = True
    world.run("DEL", pod.id, "", prev=res).error(11)
    details = world.run("CHECK", pod.id, netns(pod), prev=res).error(103)["details"]
    assert "is pending" in details


def test_the_next_run_for_another_pod_finishes_a_pending_del(world: World) -> None:
    pod, _ = pending_del(world)
    other = world.pod("db")
    world.add(other)
    assert [a.container_id for a in world.records()] == [other.id]
    assert "pods" not in world.inspect(pod.id).endpoints


def test_gc_finishes_pending_dels(world: World) -> None:
    pod, _ = pending_del(world)
    world.version = "1.1.0"
    world.run("GC", conf=world.conf(**{"cni.dev/valid-attachments": [
        {"containerID": pod.id, "ifname": "eth0"}]})).silent()
    assert world.records() == [] and "pods" not in world.inspect(pod.id).endpoints


def test_a_repeated_del_finishes_it_and_an_add_of_the_key_first_finishes_it(
        tmp_path: Path) -> None:
    world = make_world(tmp_path, FLAVOURS["28"])  # 20.10 never gives eth0 again
    pod, _ = pending_del(world)
    world.add(pod)  # the same key: the pending DEL first, then a new attachment
    assert [a.state for a in world.records()] == ["attached"]
    world.engine.down = True
    world.run("DEL", pod.id, netns(pod)).error(11)
    world.engine.down = False
    world.run("DEL", pod.id, netns(pod)).silent()
    assert world.records() == [] and "pods" not in world.inspect(pod.id).endpoints


def test_a_pending_del_whose_lock_is_held_waits(world: World) -> None:
    pod, _ = pending_del(world)
    with Store(world.state_dir) as store, store.lock(pod.id):
        world.add(world.pod("db"))  # does not wait for the lock, leaves the record
        assert sorted(a.state for a in world.records()) == ["attached", "deleting"]
    world.add(world.pod("web2"))
    assert sorted(a.state for a in world.records()) == ["attached", "attached"]


def test_del_errors_never_carry_phrases_runtimes_read_as_gone(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    world.engine.fail("disconnect", Rejected("plugin endpoint not found: no such file or "
                                             "directory", 500))
    doc = world.run("DEL", pod.id, "").error(100)  # containerd would have dropped it
    assert no_misread_phrase(doc) and "plugin endpoint missing: does not exist" in doc["details"]
    assert len(world.records()) == 1  # not lost: the next DEL tries again
    err = CNIError(11, "Network NOT FOUND", "dial unix /x.sock: No such file or directory")
    assert no_misread_phrase(err.for_del().to_dict("1.0.0"))
    assert without_misread_phrases("network pods not found") == "network pods missing"


# ---- proxy pods whose sandbox ended ------------------------------------------------------


@pytest.fixture
def pw(world: World) -> World:
    world.ns.create(NS)
    return world


def stopped_proxy_pod(pw: World) -> dict[str, object]:
    res = pw.run("ADD", CID, NS).ok()
    [sb] = sandboxes(pw)
    pw.engine.stop(sb.id)  # docker stop; or dockerd restarted without live-restore
    assert "eth0" in pw.links(NS)  # Docker frees the address, the pod still has it
    return res


def test_the_next_run_removes_the_interface_of_an_ended_sandbox(pw: World) -> None:
    res = stopped_proxy_pod(pw)
    pw.add(pw.pod("db"))
    assert set(pw.links(NS)) == {"lo"}
    [att] = [a for a in pw.records() if a.container_id == CID]
    assert att.state == "sandbox-gone"
    assert "has ended" in pw.run("CHECK", CID, NS, prev=res).error(103)["details"]
    pw.run("DEL", CID, NS, prev=res).silent()
    assert sandboxes(pw) == [] and [a.container_id for a in pw.records()] != [CID]


def test_check_removes_the_interface_of_an_ended_sandbox(pw: World) -> None:
    res = stopped_proxy_pod(pw)
    assert "has ended" in pw.run("CHECK", CID, NS, prev=res).error(103)["details"]
    assert set(pw.links(NS)) == {"lo"}


def test_del_removes_the_interface_of_an_ended_sandbox_by_itself(pw: World) -> None:
    res = stopped_proxy_pod(pw)
    environ = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": CID, "CNI_NETNS": NS,
               "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
               "DOCKER_HOST": "unix:///fake/docker.sock"}
    plugin = DockerPlugin(environ, engine_factory=pw.engine_factory, namespaces=pw.ns,
                          reconciles=False)  # no pass first: DEL's own release
    import io

    from cni2cnm.cni import skel

    out = io.StringIO()
    doc = {**pw.conf(), "prevResult": res}
    assert skel.dispatch(lambda: plugin, environ, io.BytesIO(json.dumps(doc).encode()),
                         out) == 0
    assert set(pw.links(NS)) == {"lo"} and sandboxes(pw) == [] and pw.records() == []


def test_an_interface_of_another_mac_or_namespace_is_never_removed(pw: World) -> None:
    stopped_proxy_pod(pw)
    with pw.ns.open(NS) as view:
        eth0 = view.link_named("eth0")
        assert eth0 is not None
    pw.ns.get(NS).update(eth0, mac="02:00:00:00:00:99")  # not what ADD moved
    pw.add(pw.pod("db"))
    assert "eth0" in pw.links(NS)


# ---- the store ----------------------------------------------------------------------------


def test_a_store_without_the_state_index_gets_it_and_stays_version_1(tmp_path: Path) -> None:
    with Store(str(tmp_path)) as store:  # as an older cni2cnm left it
        store.db.execute("DROP INDEX attachments_state")
        store.db.execute("INSERT INTO attachments (network, container_id, ifname, state, "
                         "created, updated) VALUES ('n', 'c', 'eth0', 'attached', 1, 1)")
    with Store(str(tmp_path)) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == 1  # older ones open it
        assert [a.key for a in store.in_state("attached")] == [("n", "c", "eth0")]
    db = sqlite3.connect(tmp_path / "attachments.db")
    plan = " ".join(str(r) for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM attachments WHERE state = 'deleting'"))
    db.close()
    assert "attachments_state" in plan
