"""GC and STATUS (CNI 1.1.0) against the real engine."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest
from c2ctest import pause_container
from pluginrun import Plugin, cri_args, endpoint, proc_netns


@pytest.fixture
def plugin(docker_host: str, resources: Any, net: Any) -> Plugin:
    return Plugin(docker_host, str(resources.tmpdir()), net.name, cni_version="1.1.0")


def attach(plugin: Plugin, resources: Any, images: Any, n: int) -> list[Any]:
    pods = [pause_container(resources, images) for _ in range(n)]
    for p in pods:
        plugin.run("ADD", p.id, proc_netns(p), cni_args=cri_args(p.id)).ok()
    return pods


def gc(plugin: Plugin, **keys: Any) -> Any:
    return plugin.run("GC", "", "", ifname="", conf=plugin.conf(**keys))


def valid(*pods: Any) -> list[dict[str, str]]:
    return [{"containerID": p.id, "ifname": "eth0"} for p in pods]


def test_gc_removes_what_is_not_listed(plugin: Plugin, resources: Any, images: Any,
                                       net: Any) -> None:
    keep, drop = attach(plugin, resources, images, 2)
    gc(plugin, **{"cni.dev/valid-attachments": valid(keep)}).silent()
    assert [r.docker_id for r in plugin.records()] == [keep.id]
    assert endpoint(keep, net.name)["EndpointID"]
    assert endpoint(drop, net.name) is None


def test_gc_reads_the_older_attachments_key(plugin: Plugin, resources: Any, images: Any,
                                            net: Any) -> None:
    a, b, c = attach(plugin, resources, images, 3)
    gc(plugin, **{"cni.dev/attachments": valid(a), "cni.dev/valid-attachments": valid(b)}
       ).silent()
    assert sorted(r.docker_id for r in plugin.records()) == sorted([a.id, b.id])
    assert endpoint(c, net.name) is None


def test_gc_without_any_list_removes_everything_of_this_network(
    docker_host: str, plugin: Plugin, resources: Any, images: Any, net: Any
) -> None:
    # cnitool sends no list at all. Another network's attachments are not touched.
    other_net = resources.network()
    other = Plugin(docker_host, plugin.state_dir, other_net.name, cni_version="1.1.0")
    [theirs] = attach(other, resources, images, 1)
    pods = attach(plugin, resources, images, 2)
    gc(plugin).silent()
    assert plugin.records() == []
    assert all(endpoint(p, net.name) is None for p in pods)
    assert [r.docker_id for r in other.records()] == [theirs.id]
    assert endpoint(theirs, other_net.name)["EndpointID"]


def test_gc_drops_records_of_removed_containers(plugin: Plugin, resources: Any,
                                                images: Any) -> None:
    [gone] = attach(plugin, resources, images, 1)
    gone.remove(force=True)
    gc(plugin, **{"cni.dev/valid-attachments": valid(gone)}).silent()
    assert plugin.records() == []


def test_gc_reports_failures_together_and_keeps_going(plugin: Plugin, resources: Any,
                                                      images: Any, net: Any) -> None:
    pods = attach(plugin, resources, images, 2)
    dead = plugin.conf(dockerHost="unix:///run/c2ct-no-engine.sock")
    out = plugin.run("GC", "", "", ifname="", conf=dead)
    doc = out.error(11)
    assert "GC could not finish" in doc["msg"]
    assert all(p.id in doc["details"] for p in pods)
    assert len(plugin.records()) == 2
    gc(plugin).silent()
    assert plugin.records() == []


def test_gc_needs_cni_1_1_0(plugin: Plugin) -> None:
    out = plugin.run("GC", "", "", ifname="", conf=plugin.conf(cniVersion="1.0.0"))
    out.error(1)


def test_status_ok(plugin: Plugin) -> None:
    plugin.run("STATUS", "", "", ifname="").silent()


def test_status_engine_unreachable(plugin: Plugin) -> None:
    dead = {"DOCKER_HOST": "unix:///run/c2ct-no-engine.sock"}
    out = plugin.run("STATUS", "", "", ifname="", env=dead)
    details = out.error(50)["details"]
    assert "c2ct-no-engine.sock" in details
    assert "no such file" in details.lower() or "connection refused" in details.lower()


def test_status_network_missing(plugin: Plugin) -> None:
    out = plugin.run("STATUS", "", "", ifname="", conf=plugin.conf(network="c2ct-missing"))
    assert "c2ct-missing" in out.error(50)["details"]


def test_status_network_removed_with_attachments_recorded(plugin: Plugin, resources: Any,
                                                          images: Any, net: Any) -> None:
    [pod] = attach(plugin, resources, images, 1)
    net.disconnect(pod.id, force=True)
    net.remove()
    out = plugin.run("STATUS", "", "", ifname="")
    assert "1 recorded attachment" in out.error(51)["details"]


def test_status_state_dir_unusable(plugin: Plugin, resources: Any) -> None:
    blocker = resources.tmpdir() / "file"
    blocker.write_text("not a directory")
    out = plugin.run("STATUS", "", "", ifname="", conf=plugin.conf(stateDir=str(blocker / "s")))
    assert str(blocker) in out.error(50)["details"]


def test_state_dir_parents_are_made_0755_whatever_the_umask(plugin: Plugin,
                                                           resources: Any) -> None:
    root = resources.tmpdir()
    state = root / "lib" / "cni" / "s"
    old = os.umask(0)  # the runtime's: the plugin process inherits it
    try:
        plugin.run("STATUS", "", "", ifname="", conf=plugin.conf(stateDir=str(state))).silent()
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in (root / "lib", root / "lib" / "cni", state, state / "locks")}
    assert modes == {"lib": 0o755, "cni": 0o755, "s": 0o700, "locks": 0o700}


def test_a_symlinked_state_dir_is_refused_and_nothing_written_there(
        plugin: Plugin, resources: Any) -> None:
    root = resources.tmpdir()
    real = root / "real"
    real.mkdir(mode=0o700)
    (root / "state").symlink_to(real)
    conf = plugin.conf(stateDir=str(root / "state"))
    ns = resources.netns()
    details = plugin.run("ADD", "c2c-link-" + "a1" * 8, ns, conf=conf).error(5)["details"]
    assert f"{root / 'state'} is a symbolic link" in details and "rm " in details
    assert "is a symbolic link" in plugin.run("STATUS", "", "", ifname="",
                                              conf=conf).error(50)["details"]
    assert list(real.iterdir()) == []


def test_a_state_dir_below_a_group_writable_directory_is_refused(plugin: Plugin,
                                                                resources: Any) -> None:
    root = resources.tmpdir()
    (root / "lib" / "s").mkdir(parents=True, mode=0o700)
    (root / "lib").chmod(0o775)
    conf = plugin.conf(stateDir=str(root / "lib" / "s"))
    details = plugin.run("STATUS", "", "", ifname="", conf=conf).error(50)["details"]
    assert f"{root / 'lib'} is writable by group or others" in details
    assert list((root / "lib" / "s").iterdir()) == []
