"""Podman's Docker-compatible API as the engine (issue 15 item 4): Debian's podman 4.3
`podman system service` on a unix socket, in a network namespace of the test's own, as
`dockerHost`.

What these tests pin down (see the README, "Podman as the engine"): STATUS works; ADD does
not, in either mode, and says why as a CNI error, leaving nothing behind in proxy mode:
- container mode, a pod started with `--network none` (as cri-dockerd starts pause
  containers): podman answers the connect (and the disconnect from `none`) with 500
  `"" is not supported: invalid network mode`;
- proxy mode: podman creates and starts the sandbox on the network (hardened options and
  all), but reports its endpoint with an EMPTY EndpointID, which cni2cnm reads as "not
  connected" (dockerd 20.10 leaves such entries after a failed connect).
If podman (or cni2cnm) changes, these tests fail and the README must change with them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from c2ctest import (
    PREFIX,
    SCRIPTS,
    libcni_state_left_as_found,
    require,
    unique_name,
)
from machine import stop_pid, unmount_under
from pluginrun import Plugin

# The engine is podman's service of this module: the daemon-mode pass (which targets
# DOCKER_HOST's dockerd) has nothing to add.
pytestmark = pytest.mark.own_modes

PAUSE = "localhost/local/pause:3.10"  # podman names an imported local/pause:3.10 so


@dataclass
class PodmanService:
    root: Path
    netns: str            # /run/netns/NAME the service (and its bridges) live in
    host: str             # unix://ROOT/podman.sock
    proc: subprocess.Popen[bytes]
    client: Any = None

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["nsenter", f"--net={self.netns}", "podman", "--root", str(self.root / "root"),
             "--runroot", str(self.root / "run"), "--storage-driver", "vfs", *args],
            env={**os.environ, "CONTAINERS_CONF": str(self.root / "containers.conf")},
            capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
        return proc


@contextlib.contextmanager
def podman_service() -> Iterator[PodmanService]:
    import docker

    root = Path(tempfile.mkdtemp(prefix="c2cpe.", dir="/tmp"))
    ns = unique_name("pmns")
    proc = None
    client = None
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        (root / "net.d").mkdir()
        # default_ulimits: without CAP_SYS_RESOURCE podman cannot raise them to its own
        # defaults ("error setting rlimit type 7: operation not permitted").
        (root / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            'cni_plugin_dirs = ["/usr/lib/cni"]\n'
            f'network_config_dir = "{root}/net.d"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n')
        sock = root / "podman.sock"
        with open(root / "service.log", "wb") as log:
            proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{ns}", "podman", "--root", str(root / "root"),
                 "--runroot", str(root / "run"), "--storage-driver", "vfs", "system",
                 "service", "--time=0", f"unix://{sock}"],
                env={**os.environ, "CONTAINERS_CONF": str(root / "containers.conf")},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        svc = PodmanService(root, f"/run/netns/{ns}", f"unix://{sock}", proc)
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, (root / "service.log").read_text()
            assert time.monotonic() < deadline, "podman system service did not come up"
            time.sleep(0.1)
        # A pause image without a registry: scripts/pause.c, imported into podman.
        build = root / "pause"
        build.mkdir()
        subprocess.run(["gcc", "-Os", "-static", "-s", "-o", str(build / "pause"),
                        str(SCRIPTS / "pause.c")], check=True, capture_output=True)
        subprocess.run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", str(build),
                        "-cf", str(root / "pause.tar"), "."], check=True, capture_output=True)
        svc.podman("import", "-c", 'ENTRYPOINT ["/pause"]', str(root / "pause.tar"),
                   "local/pause:3.10")
        client = docker.DockerClient(base_url=svc.host, version="auto", timeout=60)
        svc.client = client
        yield svc
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                for c in client.containers.list(all=True):
                    c.remove(force=True)
            with contextlib.suppress(Exception):
                for n in client.networks.list():
                    if n.name.startswith(PREFIX):
                        n.remove()
            client.close()
        if proc is not None and proc.poll() is None:
            stop_pid(proc.pid, 30)
            proc.wait(30)
        unmount_under(root)
        if os.path.exists(f"/run/netns/{ns}"):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pme() -> Iterator[PodmanService]:
    require("podman", "gcc", "nsenter", root="podman's service needs root here")
    with libcni_state_left_as_found(), podman_service() as svc:
        yield svc


@pytest.fixture
def pnet(pme: PodmanService) -> Iterator[Any]:
    net = pme.client.networks.create(unique_name("net"), driver="bridge", ipam={
        "Driver": "default", "Config": [{"Subnet": "10.250.7.0/24"}]})
    try:
        yield net
    finally:
        with contextlib.suppress(Exception):
            net.remove()


@pytest.fixture
def pplugin(pme: PodmanService, pnet: Any) -> Plugin:
    state = tempfile.mkdtemp(prefix=PREFIX, dir=str(pme.root))
    return Plugin(pme.host, f"{state}/state", pnet.name, cni_version="1.1.0",
                  conf_extra={"dockerHost": pme.host, "sandboxImage": PAUSE})


def test_status_answers(pplugin: Plugin) -> None:
    pplugin.run("STATUS", "", "", ifname="").silent()


def test_container_mode_none_pod_is_refused_by_podman(pme: PodmanService, pplugin: Plugin,
                                                      pnet: Any) -> None:
    pod = pme.client.containers.run(PAUSE, name=unique_name("pod"), network_mode="none",
                                    detach=True)
    try:
        pod.reload()
        netns = f"/proc/{pod.attrs['State']['Pid']}/ns/net"
        out = pplugin.run("ADD", pod.id, netns, conf=pplugin.conf(mode="container"))
        doc = out.error(100)
        assert "invalid network mode" in doc["details"], doc
        assert "Traceback" not in out.stderr
        pod.reload()
        assert pod.attrs["HostConfig"]["NetworkMode"] == "none"
        assert pod.attrs["NetworkSettings"]["Networks"] in ({}, None)
    finally:
        pod.remove(force=True)


def test_proxy_mode_sandbox_has_no_endpoint_id(pme: PodmanService, pplugin: Plugin,
                                               pnet: Any) -> None:
    ns = unique_name("ns")
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        before = subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True,
                                text=True, check=True).stdout
        out = pplugin.run("ADD", unique_name("cid"), f"/run/netns/{ns}",
                          conf=pplugin.conf(mode="proxy"))
        doc = out.error(100)
        assert "did not get an endpoint" in doc["details"], doc
        # Rolled back: no sandbox, no record, nothing moved into the namespace.
        assert [c.name for c in pme.client.containers.list(all=True)
                if c.name.startswith("cni2cnm-")] == []
        assert pplugin.records() == []
        after = subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True,
                               text=True, check=True).stdout
        assert json.loads(after) == json.loads(before)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)


def test_podman_reports_no_endpoint_id(pme: PodmanService, pnet: Any) -> None:
    """The root cause, on the API itself: a container podman created on the network is
    connected (it has an address) but its EndpointID is empty."""
    c = pme.client.containers.run(PAUSE, name=unique_name("ep"), network=pnet.name,
                                  detach=True)
    try:
        c.reload()
        ep = c.attrs["NetworkSettings"]["Networks"][pnet.name]
        assert ep["IPAddress"].startswith("10.250.7.")
        assert ep["EndpointID"] == ""
        assert ep["NetworkID"] == pnet.name  # the name, not an ID
    finally:
        c.remove(force=True)

