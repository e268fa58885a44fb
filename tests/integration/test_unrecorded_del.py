"""DEL when the store is lost (issue 19, item 10c), on a real engine: only the Docker container
CNI_CONTAINERID names, running in CNI_NETNS, is detached; a container found only by scanning
for CNI_NETNS (an ID no Docker container has, as cnitool's) is left attached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from c2ctest import pause_container
from pluginrun import Plugin, endpoint, proc_netns


def lose_database(plugin: Plugin) -> None:
    for p in Path(plugin.state_dir).glob("attachments.db*"):
        p.unlink()  # store-id stays: the store is known to be lost


def test_a_container_found_only_by_its_namespace_is_not_detached(plugin: Plugin, net: Any,
                                                                  resources: Any,
                                                                  images: Any) -> None:
    pod = pause_container(resources, images)
    runtime_id = "cnitool-" + pod.id[:20]  # not a Docker container: found by CNI_NETNS
    plugin.run("ADD", runtime_id, proc_netns(pod)).ok()
    pod.reload()
    assert endpoint(pod, net.name) is not None
    lose_database(plugin)
    plugin.run("DEL", runtime_id, proc_netns(pod)).silent()
    pod.reload()
    assert endpoint(pod, net.name) is not None  # nothing named it: left alone


def test_the_container_cni_containerid_names_is_detached(plugin: Plugin, net: Any,
                                                        resources: Any, images: Any) -> None:
    pod = pause_container(resources, images)
    plugin.run("ADD", pod.id, proc_netns(pod)).ok()
    lose_database(plugin)
    plugin.run("DEL", pod.id, proc_netns(pod)).silent()
    pod.reload()
    assert endpoint(pod, net.name) is None
