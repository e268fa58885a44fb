"""A real CNI runtime end to end: podman 4.3 (CNI backend) runs containers on Docker networks
through cni2cnm in proxy mode, alone and chained before the reference `tuning` plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from c2ctest import busybox_container, libcni_state_left_as_found, unavailable
from machine import unmount_under
from pluginrun import Plugin, plugin_executable

REFERENCE_PLUGINS = "/usr/lib/cni"


class Podman:
    def __init__(self, root: Path, docker_host: str) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "DOCKER_HOST": docker_host,
        }
        self.cleanups: list[Callable[[], Any]] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 120
                 ) -> subprocess.CompletedProcess[str]:
        cmd = ["podman", "--root", str(self.root / "root"), "--runroot", str(self.root / "run"),
               "--storage-driver", "vfs", *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {proc.stderr}")
        return proc

    def run(self, name: str, network: str, script: str) -> None:
        # Every podman flag before --rootfs: a flag after it goes to the container.
        self("run", "-d", "--name", name, "--network", network,
             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
             "--rootfs", str(self.root / "rootfs"), "/bin/sh", "-c", script)

    def ip(self, name: str, network: str) -> str:
        out = self("inspect", name, "--format", "{{json .NetworkSettings.Networks}}").stdout
        return json.loads(out)[network]["IPAddress"]


@pytest.fixture
def podman(docker_host: str, resources: Any) -> Iterator[Podman]:
    if not shutil.which("podman") or not Path(REFERENCE_PLUGINS, "tuning").exists():
        unavailable("podman and containernetworking-plugins are needed (scripts/bootstrap.sh)")
    root = Path(tempfile.mkdtemp(prefix="c2cpm.", dir="/tmp"))
    (root / "net.d").mkdir()
    rootfs = root / "rootfs" / "bin"
    rootfs.mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (rootfs / applet).symlink_to("busybox")
    (root / "containers.conf").write_text(
        "[network]\n"
        'network_backend = "cni"\n'
        f'cni_plugin_dirs = ["{root}/bin", "{REFERENCE_PLUGINS}"]\n'
        f'network_config_dir = "{root}/net.d"\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    # The plugin is placed in the runtime's CNI bin dir by `cni2cnm install`.
    subprocess.run([plugin_executable(), "install", "--bin-dir", str(root / "bin"),
                    "--conf-dir", str(root / "net.d"), "--state-dir", str(root / "state")],
                   check=True, capture_output=True, timeout=60)
    assert os.access(root / "bin" / "cni2cnm", os.X_OK)
    pm = Podman(root, docker_host)
    try:
        with libcni_state_left_as_found():
            yield pm
            pm("rm", "--all", "--force", "--time", "0", check=False)
    finally:
        pm("rm", "--all", "--force", "--time", "0", check=False)
        for fn in pm.cleanups:
            fn()
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def write_conflist(pm: Podman, name: str, docker_net: str, state: str,
                   chained: list[dict[str, Any]]) -> None:
    """The conflist, and a teardown that removes sandboxes a failed run may leave."""
    client = docker.DockerClient(base_url=pm.env["DOCKER_HOST"], version="auto")
    pm.cleanups.append(lambda: [c.remove(force=True) for c in client.containers.list(
        all=True, filters={"label": f"io.cni2cnm.network={name}"})])
    conf = {
        "cniVersion": "1.0.0",  # podman 4.3's libcni takes results up to 1.0.0
        "name": name,
        "plugins": [
            # "daemon": "off": podman does not hand the test's environment to its plugins,
            # and a daemon started on demand would outlive the test on the node's socket.
            {"type": "cni2cnm", "network": docker_net, "stateDir": state,
             "sandboxImage": "local/pause:3.10", "daemon": "off"},
            *chained,
        ],
    }
    (pm.root / "net.d" / f"{name}.conflist").write_text(json.dumps(conf))


def exchange_tcp(pm: Podman, resources: Any, images: Any, net: Any, name: str,
                 cni_name: str) -> None:
    """TCP both ways between the podman container and a Docker container on the network."""
    pm.run(name, cni_name, "echo from-podman | nc -l -p 8080; sleep 300")
    ip = pm.ip(name, cni_name)
    assert ip.rsplit(".", 1)[0] == net.attrs["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0]
    peer = busybox_container(resources, images, network=net.name,
                             command=["sh", "-c", "echo from-docker | nc -l -p 9090; sleep 300"])
    code, out = peer.exec_run(["nc", "-w", "3", ip, "8080"])
    assert code == 0 and out.decode().strip() == "from-podman"
    peer.reload()
    peer_ip = peer.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    got = pm("exec", name, "nc", "-w", "3", peer_ip, "9090").stdout
    assert got.strip() == "from-docker"


def assert_nothing_left(pm: Podman, plugin: Plugin, net: Any, docker_client: Any,
                        name: str) -> None:
    pm("rm", "--force", "--time", "0", name)
    assert plugin.records() == []
    left = docker_client.containers.list(
        all=True, filters={"label": "io.cni2cnm.sandbox=true"})
    assert [c.name for c in left if c.labels.get("io.cni2cnm.network") == plugin.name] == []
    net.reload()
    assert all(not ep["Name"].startswith("cni2cnm-") for ep in net.attrs["Containers"].values())


def test_podman_container_on_a_docker_network(podman: Podman, docker_host: str,
                                              resources: Any, images: Any,
                                              docker_client: Any) -> None:
    net = resources.network()
    state = str(podman.root / "state-a")
    write_conflist(podman, "c2c-pm-a", net.name, state, [])
    exchange_tcp(podman, resources, images, net, "c2cpm-a", "c2c-pm-a")
    plugin = Plugin(docker_host, state, "c2c-pm-a")
    [rec] = plugin.records()
    assert rec.mode == "proxy" and len(rec.container_id) == 64
    assert_nothing_left(podman, plugin, net, docker_client, "c2cpm-a")


def test_podman_chained_before_tuning(podman: Podman, docker_host: str, resources: Any,
                                      images: Any, docker_client: Any) -> None:
    net = resources.network()
    state = str(podman.root / "state-b")
    tuning = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}}
    write_conflist(podman, "c2c-pm-b", net.name, state, [tuning])
    exchange_tcp(podman, resources, images, net, "c2cpm-b", "c2c-pm-b")
    # tuning ran on the interface cni2cnm made (it got our result as prevResult).
    rp = podman("exec", "c2cpm-b", "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").stdout
    assert rp.strip() == "2"
    plugin = Plugin(docker_host, state, "c2c-pm-b")
    assert len(plugin.records()) == 1
    assert_nothing_left(podman, plugin, net, docker_client, "c2cpm-b")
