"""Staying correct through faults: engine down or restarted, plugin killed, state lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from c2ctest import Resources, pause_container, unique_name
from engines import API_IFNAME, API_RANDOM_MAC, derived_mac, engine_api
from pluginrun import Plugin, cri_args, endpoint, proc_netns
from privateengine import PrivateEngine

from cni2cnm.store import Store

ALWAYS = {"Name": "always"}


@pytest.fixture
def pplugin(peng: PrivateEngine, pres: Resources, pnet: Any) -> Plugin:
    return Plugin.on(peng.host, pres, pnet.name)


def networks_of(container: Any) -> list[str]:
    container.reload()
    return sorted(container.attrs["NetworkSettings"]["Networks"])


def start_add_until(plugin: Plugin, pod: Any, point: str) -> subprocess.Popen[str]:
    """Start an ADD that stops itself (SIGSTOP) at a test point of the plugin."""
    return plugin.start_until(point, pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                              conf=plugin.conf(dockerTimeout=5))


# ---- 1. engine stopped before ADD -------------------------------------------------------


def test_engine_down_before_add(peng: PrivateEngine, pres: Resources, pplugin: Plugin,
                                pnet: Any) -> None:
    pod = pause_container(pres, peng.images, restart_policy=ALWAYS)
    netns = proc_netns(pod)
    peng.down()
    out = pplugin.run("ADD", pod.id, netns, cni_args=cri_args(pod.id))
    assert peng.host.removeprefix("unix://") in out.error(11)["details"]
    assert pplugin.records() == []
    peng.up()
    peng.wait_running(pod)
    assert networks_of(pod) == ["none"]  # untouched
    res = pplugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id)).ok().doc
    assert endpoint(pod, pnet.name)["IPAddress"] == res["ips"][0]["address"].split("/")[0]


# ---- 2. engine stopped between connect and the end of ADD ---------------------------------


@pytest.mark.parametrize("cleanup", ["DEL", "GC"])
def test_engine_dies_after_connect(peng: PrivateEngine, pres: Resources, pplugin: Plugin,
                                   pnet: Any, cleanup: str) -> None:
    pod = pause_container(pres, peng.images, restart_policy=ALWAYS)
    proc = start_add_until(pplugin, pod, "after-connect")
    peng.down()
    proc.send_signal(signal.SIGCONT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert json.loads(stdout)["code"] == 11
    [rec] = pplugin.records()
    assert rec.state == "adding"  # the rollback could not reach the engine: DEL/GC will
    peng.up()
    peng.wait_running(pod)
    if cleanup == "DEL":
        pplugin.run("DEL", pod.id, proc_netns(pod)).silent()
    else:
        conf = pplugin.conf(cniVersion="1.1.0")
        pplugin.run("GC", "", "", ifname="", conf=conf).silent()
    assert endpoint(pod, pnet.name) is None
    assert pplugin.records() == []
    pnet.reload()
    assert pnet.attrs["Containers"] == {}


# ---- 3. plugin SIGKILLed half-way ---------------------------------------------------------


@pytest.mark.parametrize("point", ["after-intent", "after-connect"])
def test_plugin_killed_then_del_finishes(peng: PrivateEngine, pres: Resources,
                                         pplugin: Plugin, pnet: Any, point: str) -> None:
    pod = pause_container(pres, peng.images)
    proc = start_add_until(pplugin, pod, point)
    proc.kill()
    proc.wait()
    [rec] = pplugin.records()
    assert rec.state == "adding" and rec.docker_id == pod.id
    pplugin.run("DEL", pod.id, proc_netns(pod), cni_args=cri_args(pod.id)).silent()
    assert endpoint(pod, pnet.name) is None and pplugin.records() == []
    pnet.reload()
    assert pnet.attrs["Containers"] == {}


def test_plugin_killed_then_add_retried(peng: PrivateEngine, pres: Resources,
                                        pplugin: Plugin, pnet: Any) -> None:
    pod = pause_container(pres, peng.images)
    proc = start_add_until(pplugin, pod, "after-connect")
    proc.kill()
    proc.wait()
    res = pplugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id))
    # The interrupted attachment is undone first; Docker's interface counter has moved on
    # on engines that cannot name interfaces (API < 1.48), which the error then says.
    if engine_api(peng.client) >= API_IFNAME:
        res.ok()
        [rec] = pplugin.records()
        assert rec.state == "attached"
        assert endpoint(pod, pnet.name)["EndpointID"] == rec.endpoint_id
    else:
        assert "Docker named the interface eth1" in res.error(102)["details"]
        assert pplugin.records() == [] and endpoint(pod, pnet.name) is None
    pnet.reload()
    assert len(pnet.attrs["Containers"]) == len(pplugin.records())


# ---- 7. dockerd restarted while containers run -------------------------------------------


def test_engine_restart_check_tells_the_truth_and_del_works(
    peng: PrivateEngine, pres: Resources, pplugin: Plugin, pnet: Any
) -> None:
    pod = pause_container(pres, peng.images, restart_policy=ALWAYS)
    old_netns = proc_netns(pod)
    res = pplugin.run("ADD", pod.id, old_netns, cni_args=cri_args(pod.id)).ok().doc
    pplugin.run("CHECK", pod.id, old_netns, prev=res).silent()
    peng.restart()
    peng.wait_running(pod)
    # Without live-restore the pause container was restarted: new process, new namespace,
    # and a new endpoint, whose MAC engines from API 1.48 pick at random again (older ones
    # derive it from the address). CHECK reports the first difference it finds: either is
    # the truth.
    out = pplugin.run("CHECK", pod.id, old_netns, prev=res)
    details = out.error(103)["details"]
    ep = endpoint(pod, pnet.name)
    assert ep["EndpointID"]  # Docker re-attached it on restart
    assert proc_netns(pod) != old_netns
    old_mac, new_mac = res["interfaces"][0]["mac"], ep["MacAddress"]
    if engine_api(peng.client) < API_RANDOM_MAC:
        assert new_mac == derived_mac(ep["IPAddress"])
    else:
        assert new_mac != old_mac
    truths = [old_netns in details]
    if new_mac != old_mac:
        truths.append(f"endpoint MAC is {new_mac}" in details and old_mac in details)
    assert any(truths), details
    pplugin.run("DEL", pod.id, proc_netns(pod), prev=res).silent()
    assert endpoint(pod, pnet.name) is None and pplugin.records() == []


# ---- 5. namespace gone before DEL ---------------------------------------------------------


def test_del_after_ip_netns_bind_mount_deleted(peng: PrivateEngine, pres: Resources,
                                               pplugin: Plugin, pnet: Any) -> None:
    pod = pause_container(pres, peng.images)
    name = unique_name("ns")
    netns = pres.attach_netns(pod, name)
    cid = "cnitool-" + "5e" * 10
    res = pplugin.run("ADD", cid, netns).ok().doc
    subprocess.run(["ip", "netns", "delete", name], check=True)
    pplugin.run("DEL", cid, netns, prev=res).silent()
    assert endpoint(pod, pnet.name) is None and pplugin.records() == []


# ---- 8, 9. the state store lost, broken or read-only --------------------------------------


def db_path(plugin: Plugin) -> Path:
    return Path(plugin.state_dir) / "attachments.db"


def test_corrupt_store_is_moved_aside(peng: PrivateEngine, pres: Resources, pplugin: Plugin,
                                      pnet: Any) -> None:
    pod1, pod2 = (pause_container(pres, peng.images) for _ in range(2))
    pplugin.run("ADD", pod1.id, proc_netns(pod1)).ok()
    for p in Path(pplugin.state_dir).glob("attachments.db*"):
        p.write_bytes(b"this is not a database" * 100)
    out = pplugin.run("ADD", pod2.id, proc_netns(pod2))
    details = out.error(5)["details"]
    assert str(db_path(pplugin)) in details and "moved aside" in details
    assert list(Path(pplugin.state_dir).glob("attachments.db.corrupt-*"))
    assert networks_of(pod2) == ["none"]
    # DEL does its best through the engine alone.
    pplugin.run("DEL", pod1.id, proc_netns(pod1)).silent()
    assert endpoint(pod1, pnet.name) is None
    # The corrupt file is never silently replaced: ADD stays refused until an operator
    # removes the marker, then the store starts again empty.
    assert "missing" in pplugin.run("ADD", pod2.id, proc_netns(pod2)).error(5)["details"]
    (Path(pplugin.state_dir) / "store-id").unlink()
    pplugin.run("ADD", pod2.id, proc_netns(pod2)).ok()
    assert [r.docker_id for r in pplugin.records()] == [pod2.id]


def test_missing_store_fails_add_and_del_still_detaches(
    peng: PrivateEngine, pres: Resources, pplugin: Plugin, pnet: Any
) -> None:
    pod1, pod2 = (pause_container(pres, peng.images) for _ in range(2))
    pplugin.run("ADD", pod1.id, proc_netns(pod1)).ok()
    for p in Path(pplugin.state_dir).glob("attachments.db*"):
        p.unlink()
    out = pplugin.run("ADD", pod2.id, proc_netns(pod2))
    details = out.error(5)["details"]
    assert str(db_path(pplugin)) in details and "missing" in details
    assert networks_of(pod2) == ["none"]
    pplugin.run("DEL", pod1.id, proc_netns(pod1)).silent()
    assert endpoint(pod1, pnet.name) is None


def test_unreadable_store(peng: PrivateEngine, pres: Resources, pplugin: Plugin) -> None:
    pod = pause_container(pres, peng.images)
    db_path(pplugin).parent.mkdir(parents=True)
    db_path(pplugin).mkdir()  # a directory where the database file should be
    out = pplugin.run("ADD", pod.id, proc_netns(pod))
    assert str(db_path(pplugin)) in out.error(5)["details"]
    assert networks_of(pod) == ["none"]


def test_read_only_state_dir(peng: PrivateEngine, pres: Resources, pplugin: Plugin) -> None:
    pod = pause_container(pres, peng.images)
    ro = pres.tmpdir() / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "c2ct-ro", str(ro)], check=True)
    pres.add_cleanup(lambda: subprocess.run(["umount", "-l", str(ro)], check=True))
    conf = pplugin.conf(stateDir=str(ro / "state"))
    out = pplugin.run("ADD", pod.id, proc_netns(pod), conf=conf)
    details = out.error(5)["details"]
    assert str(ro / "state") in details and "Read-only" in details
    assert networks_of(pod) == ["none"]


# ---- 10. a state directory others could write to, links in it -----------------------------
# (on the session's engine, conftest's `plugin`: these tests never stop it)


@pytest.mark.parametrize(("owner", "mode", "why"), [
    (0, 0o777, "writable by group or others"),
    (0, 0o1777, "sticky directory writable by others"),
    (0, 0o770, "writable by group or others"),
    (65534, 0o700, "owned by uid 65534"),
])
def test_a_state_dir_others_can_write_is_refused(plugin: Plugin, resources: Resources,
                                                 images: Any, owner: int, mode: int,
                                                 why: str) -> None:
    pod = pause_container(resources, images)
    state = Path(plugin.state_dir)
    state.mkdir()
    os.chown(state, owner, owner)
    state.chmod(mode)
    for command in ("ADD", "DEL"):
        out = plugin.run(command, pod.id, proc_netns(pod), cni_args=cri_args(pod.id))
        details = out.error(5)["details"] if command == "ADD" else out.stdout
        if command == "ADD":
            assert str(state) in details and why in details
            assert "chmod 700" in details or "chown root:root" in details
    assert networks_of(pod) == ["none"]  # refused before any engine change
    assert sorted(os.listdir(state)) == []  # nothing was created in it


@pytest.mark.parametrize("name", ["attachments.db", "lock"])
def test_a_symlink_in_the_state_dir_is_refused(plugin: Plugin, resources: Resources,
                                               images: Any, net: Any, name: str) -> None:
    pod, other = (pause_container(resources, images) for _ in range(2))
    plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id)).ok()
    state = Path(plugin.state_dir)
    victim = resources.tmpdir() / "victim"
    victim.write_bytes(b"")
    # the lock file of `other` (made by root, as a pod's operation would find it) or the
    # database: both stop the ADD of `other`
    link = Path(Store(str(state)).lock_file(other.id)) if name == "lock" else state / name
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    out = plugin.run("ADD", other.id, proc_netns(other), cni_args=cri_args(other.id))
    details = out.error(5)["details"]
    assert str(link) in details and "symbolic link" in details
    assert victim.read_bytes() == b""  # never opened through the link
    assert networks_of(other) == ["none"]


def test_log_file_is_private_and_not_followed(plugin: Plugin, resources: Resources,
                                              images: Any) -> None:
    pod = pause_container(resources, images)
    logs = resources.tmpdir()
    log_file = logs / "cni2cnm.log"
    conf = plugin.conf(logFile=str(log_file), logLevel="debug")
    res = plugin.run("ADD", pod.id, proc_netns(pod), conf=conf,
                      cni_args=cri_args(pod.id)).ok().doc
    assert log_file.stat().st_mode & 0o777 == 0o600 and log_file.read_text()
    victim = logs / "victim"
    victim.write_text("")
    link = logs / "link.log"
    link.symlink_to(victim)
    out = plugin.run("DEL", pod.id, proc_netns(pod), prev=res,
                      conf=plugin.conf(logFile=str(link), logLevel="info"))
    assert f"{link}: a symbolic link" in out.error(7)["details"]
    assert victim.read_text() == ""
