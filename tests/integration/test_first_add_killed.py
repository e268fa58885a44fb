"""Issue 16: the node's very first ADD killed at each step of creating the store.

Wherever the first ADD on a fresh stateDir dies (before the database exists, after SQLite
made the file but before the schema, between the schema and the store-id marker, after the
intent record), the next ADD and DEL work, and the store still notices its own later loss:
with attachments.db deleted, ADD fails with code 5 and DEL detaches through the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from c2ctest import Resources, pause_container
from pluginrun import Plugin, cri_args, endpoint, proc_netns
from test_faults import networks_of, start_add_until

# (test point, what the killed ADD left: database file, marker)
POINTS = [
    ("before-db", False, False),
    ("after-db-created", True, False),
    ("after-schema", True, False),
    ("after-intent", True, True),
]


@pytest.mark.parametrize(("point", "db_left", "marker_left"), POINTS)
def test_first_add_killed_then_the_store_still_detects_its_loss(
    docker_host: str, resources: Resources, images: Any, net: Any, point: str, db_left: bool,
    marker_left: bool,
) -> None:
    state = resources.tmpdir() / "state"
    plugin = Plugin(docker_host, str(state), net.name)
    # Three pods: an engine below API 1.48 names a pod's second interface eth1, so each
    # ADD gets a pod that was never attached.
    pod, later, refused = (pause_container(resources, images) for _ in range(3))
    db, marker = state / "attachments.db", state / "store-id"

    # The node's first ADD, SIGKILLed at the point (a runtime timeout, an OOM kill, ...).
    proc = start_add_until(plugin, pod, point)
    proc.kill()
    proc.wait()
    assert db.exists() == db_left and marker.exists() == marker_left
    assert endpoint(pod, net.name) is None  # killed before any engine change

    # The next ADD and DEL work.
    args = cri_args(pod.id)
    res = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=args).ok().doc
    assert endpoint(pod, net.name)["IPAddress"] == res["ips"][0]["address"].split("/")[0]
    assert marker.exists() and marker.stat().st_mode & 0o777 == 0o600
    plugin.run("DEL", pod.id, proc_netns(pod), cni_args=args, prev=res).silent()
    assert endpoint(pod, net.name) is None and plugin.records() == []

    # Another pod attached, then the database is lost.
    args = cri_args(later.id)
    res = plugin.run("ADD", later.id, proc_netns(later), cni_args=args).ok().doc
    assert endpoint(later, net.name) is not None
    db.unlink()
    out = plugin.run("ADD", refused.id, proc_netns(refused), cni_args=cri_args(refused.id))
    details = out.error(5)["details"]
    assert str(db) in details and "missing" in details and str(marker) in details
    assert networks_of(refused) == ["none"]  # refused before any engine change
    assert not db.exists()  # refusing re-creates nothing

    # DEL of the pod attached before the loss detaches it through the engine, exit 0.
    plugin.run("DEL", later.id, proc_netns(later), cni_args=args, prev=res).silent()
    assert endpoint(later, net.name) is None
    net.reload()
    assert net.attrs["Containers"] == {}


def test_a_first_add_killed_leaves_no_stray_marker_files(
    docker_host: str, resources: Resources, images: Any, net: Any
) -> None:
    """Killed between writing the temporary marker and linking it: the next open cleans up."""
    state = resources.tmpdir() / "state"
    plugin = Plugin(docker_host, str(state), net.name)
    pod = pause_container(resources, images)
    proc = start_add_until(plugin, pod, "after-schema")
    proc.kill()
    proc.wait()
    Path(state, ".store-id.0123abcd").write_text("left by a killed open\n")
    plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id)).ok()
    names = {p.name for p in state.iterdir()}
    assert {"attachments.db", "locks", "store-id"} <= names
    assert names <= {"attachments.db", "attachments.db-shm", "attachments.db-wal", "locks",
                     "store-id"}
    plugin.run("DEL", pod.id, proc_netns(pod), cni_args=cri_args(pod.id)).silent()
