"""Safe as root on a shared node: the plugin touches only what it attached, never the host's
network namespace, and only sandboxes of its own store (issue 12, part 1), on the real
engine."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from c2ctest import pause_container, unique_name
from pluginrun import Outcome, Plugin, cri_args, endpoint, proc_netns


def on_network(c: Any, net: Any) -> bool:
    ep = endpoint(c, net.name)
    return bool(ep and ep.get("EndpointID"))


def test_del_never_detaches_a_new_container_that_reused_the_name(
        plugin: Plugin, resources: Any, images: Any, net: Any) -> None:
    name = unique_name("web")
    old = pause_container(resources, images, name=name)
    netns = proc_netns(old)
    res = plugin.run("ADD", old.id, netns, cni_args=cri_args(old.id)).ok().doc
    old.remove(force=True)
    # Someone else starts a container with the same name directly on the network.
    new = resources.container(images.pause, name=name, network=net.name)
    assert on_network(new, net)
    plugin.run("DEL", old.id, netns, cni_args=cri_args(old.id), prev=res).silent()
    assert on_network(new, net), "DEL of the old record detached the new container"
    assert plugin.records() == []


def test_gc_never_detaches_a_new_container_that_reused_the_name(
        plugin: Plugin, resources: Any, images: Any, net: Any) -> None:
    gc = Plugin(plugin.docker_host, plugin.state_dir, plugin.name, cni_version="1.1.0")
    name = unique_name("web")
    old = pause_container(resources, images, name=name)
    gc.run("ADD", old.id, proc_netns(old), cni_args=cri_args(old.id)).ok()
    old.remove(force=True)
    new = resources.container(images.pause, name=name, network=net.name)
    gc.run("GC", "", "", ifname="", conf=gc.conf()).silent()
    assert on_network(new, net) and gc.records() == []


def lose_the_database(plugin: Plugin) -> None:
    """attachments.db unusable: a directory where the file was (the marker stays)."""
    db = Path(plugin.state_dir, "attachments.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.mkdir()


def test_del_without_a_store_leaves_a_bystander_alone(
        plugin: Plugin, resources: Any, images: Any, net: Any) -> None:
    pod = pause_container(resources, images)
    plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id)).ok()
    bystander = resources.container(images.pause, network=net.name)
    lose_the_database(plugin)
    # A DEL naming the bystander with another namespace: no evidence it is ours.
    out = plugin.run("DEL", bystander.id, proc_netns(pod), cni_args=cri_args(bystander.id))
    out.silent()
    assert on_network(bystander, net)
    # Nor with no namespace at all (cri-dockerd after the pause container died).
    plugin.run("DEL", bystander.id, "", cni_args=cri_args(bystander.id)).silent()
    assert on_network(bystander, net)


def test_del_without_a_store_detaches_the_container_running_in_cni_netns(
        plugin: Plugin, resources: Any, images: Any, net: Any) -> None:
    pod = pause_container(resources, images)
    netns = proc_netns(pod)
    plugin.run("ADD", pod.id, netns, cni_args=cri_args(pod.id)).ok()
    lose_the_database(plugin)
    plugin.run("DEL", pod.id, netns, cni_args=cri_args(pod.id)).silent()
    assert not on_network(pod, net)


@pytest.mark.parametrize("mode", ["auto", "proxy", "container"])
def test_the_hosts_own_namespace_is_refused(plugin: Plugin, resources: Any, net: Any,
                                             docker_client: Any, mode: str) -> None:
    for path in ("/proc/self/ns/net", f"/proc/{os.getpid()}/ns/net"):
        out = plugin.run("ADD", "c2ct-host-" + mode, path, conf=plugin.conf(mode=mode))
        assert "host" in out.error(4)["details"]
    net.reload()
    assert net.attrs["Containers"] == {}
    assert docker_client.containers.list(all=True, filters={"label": "io.cni2cnm.sandbox"}) == []
    assert plugin.records() == []


def test_a_namespace_of_another_type_is_refused(plugin: Plugin, net: Any) -> None:
    out = plugin.run("ADD", "c2ct-mnt", "/proc/self/ns/mnt")
    assert "/proc/self/ns/mnt" in out.error(4)["details"]
    assert plugin.records() == []


def test_cli_add_refuses_the_hosts_namespace(plugin: Plugin, net: Any, docker_host: str
                                             ) -> None:
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("cni2cnm")
    proc = subprocess.run(
        [str(cli), "--docker-host", docker_host, "--state-dir", plugin.state_dir, "add",
         f"/proc/{os.getpid()}/ns/net", "-n", net.name],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "host" in (proc.stdout + proc.stderr)
    net.reload()
    assert net.attrs["Containers"] == {}


def exiting_image(resources: Any, images: Any, docker_client: Any) -> str:
    """An image whose default command exits at once with code 3 (as busybox's `sh` does)."""
    base = resources.container(images.busybox, command="true")
    base.wait(timeout=30)
    tag = unique_name("exits")
    base.commit(repository="c2ct-exits", tag=tag, changes=['CMD ["sh", "-c", "exit 3"]'])
    ref = f"c2ct-exits:{tag}"
    resources.add_cleanup(lambda: docker_client.images.remove(ref, force=True))
    return ref


def test_proxy_sandbox_whose_image_exits_is_named_and_rolled_back(
        plugin: Plugin, resources: Any, images: Any, net: Any, docker_client: Any) -> None:
    """ADD stops once the sandbox runs (a test point) until its command has exited: run
    straight through, the move can finish before `sh` exits (under load) and ADD succeed."""
    image = exiting_image(resources, images, docker_client)
    ns = resources.netns()
    proxy = Plugin(plugin.docker_host, plugin.state_dir, plugin.name,
                   conf_extra={"mode": "proxy", "sandboxImage": image})
    proc = proxy.start_until("after-connect", "c2ct-exits", ns)
    try:
        [sandbox] = docker_client.containers.list(
            all=True, filters={"label": "io.cni2cnm.sandbox"})
        assert sandbox.wait(timeout=60)["StatusCode"] == 3
    finally:
        proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=120)
    out = Outcome("ADD", proc.returncode, stdout, stderr)
    details = out.error(100)["details"]
    assert image in details and "exited with code 3" in details and "pause" in details
    assert docker_client.containers.list(all=True, filters={"label": "io.cni2cnm.sandbox"}) == []
    assert plugin.records() == []
    net.reload()
    assert net.attrs["Containers"] == {}


def test_proxy_sandbox_runs_without_privileges(plugin: Plugin, resources: Any, net: Any,
                                               docker_client: Any) -> None:
    ns = resources.netns()
    res = plugin.run("ADD", "c2ct-hardened", ns, conf=plugin.conf(mode="proxy")).ok().doc
    [sandbox] = docker_client.containers.list(filters={"label": "io.cni2cnm.sandbox"})
    host = sandbox.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert sandbox.labels["io.cni2cnm.store"] == Path(plugin.state_dir, "store-id").read_text(
        ).strip()
    plugin.run("DEL", "c2ct-hardened", ns, conf=plugin.conf(mode="proxy"), prev=res).silent()
    assert docker_client.containers.list(all=True, filters={"label": "io.cni2cnm.sandbox"}) == []
