"""Files root appends to are root's (issue 19, item 9), through the real plugin file: a
logFile another user made (0666 in a sticky directory, or 0600 of theirs) or hard-linked is
refused with code 7 naming it, before the engine is touched; nothing is written to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from c2ctest import pause_container
from pluginrun import Plugin, cri_args, endpoint, proc_netns


def sticky_dir(resources: Any) -> Path:
    d = resources.tmpdir() / "sticky"
    d.mkdir()
    d.chmod(0o1777)
    return d


@pytest.mark.parametrize("planted", ["other_user_0666", "other_user_0600", "hard_link"])
def test_a_log_file_not_roots_alone_is_refused(plugin: Plugin, resources: Any, images: Any,
                                               net: Any, planted: str) -> None:
    log = sticky_dir(resources) / "cni2cnm.log"
    log.write_text("")
    if planted == "hard_link":
        log.chmod(0o600)
        os.link(log, log.parent / "theirs")  # a second name that outlives a chmod
    else:
        os.chown(log, 65534, 65534)
        log.chmod(0o666 if planted.endswith("0666") else 0o600)
    pod = pause_container(resources, images)
    out = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                     conf=plugin.conf(logFile=str(log), logLevel="debug"))
    details = out.error(7)["details"]
    assert f"logFile {log}: " in details, details
    assert log.read_text() == ""  # not a line: no pod IDs, namespaces or addresses
    pod.reload()
    assert endpoint(pod, net.name) is None and plugin.records() == []


def test_a_log_file_root_owns_is_used_and_kept_private(plugin: Plugin, resources: Any,
                                                       images: Any) -> None:
    log = sticky_dir(resources) / "cni2cnm.log"
    pod = pause_container(resources, images)
    conf = plugin.conf(logFile=str(log), logLevel="debug")
    old = os.umask(0)
    try:
        add = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                         conf=conf).ok()
    finally:
        os.umask(old)
    assert log.stat().st_mode & 0o777 == 0o600 and log.stat().st_uid == 0
    assert pod.id in log.read_text()
    plugin.run("DEL", pod.id, proc_netns(pod), cni_args=cri_args(pod.id), conf=conf,
               prev=add.doc).silent()
