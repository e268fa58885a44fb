"""Two Docker nodes joined by Docker Swarm, with an attachable overlay (scripts/swarm.sh).

Use the context manager or the fixture factory::

    from swarmnodes import swarm_fixture
    swarm = swarm_fixture()              # a module-scoped fixture named "swarm"

    def test_x(swarm):
        pod = swarm.b.pause()            # a none-mode pause container on the worker
        ep = swarm.b.attach(pod)         # disconnect none, connect to swarm.overlay
        ...

or ``with swarm_nodes() as swarm: ...``.  ``swarm.a`` is the manager, ``swarm.b`` a worker;
each :class:`SwarmNode` has ``host``, ``client`` (docker.DockerClient), ``name`` (hostname and
swarm node name), ``addr`` (its address on the node link) and helpers to run containers.  The
teardown always runs ``scripts/swarm.sh down`` (kills everything by PID, deletes the netns) and
removes the directory.  When the swarm cannot come up the test is skipped, or FAILS under
``CI=true`` (c2ctest.unavailable).

Containers created through the helpers are labelled ``c2ct.session=<id>`` and removed by
:meth:`SwarmNodes.cleanup` (call it after each test that shares a module-scoped swarm, e.g.
from an autouse function-scoped fixture); ``down`` removes everything anyway.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from c2ctest import (
    BUSYBOX_IMAGE,
    LABEL,
    PAUSE_IMAGE,
    SCRIPTS,
    SESSION_ID,
    netns_exec,
    pod_labels,
    remove_each,
    unavailable,
    unique_name,
)

SWARM_SH = SCRIPTS / "swarm.sh"
DEFAULT_OVERLAY = "c2c-ovl"
DEFAULT_SUBNET = "10.121.7.0/24"
UP_TIMEOUT = 300.0  # generous: other engineers' tests share the 2 cores
DOWN_TIMEOUT = 180.0


def run_swarm_sh(action: str, directory: str, env: dict[str, str] | None = None,
                 timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SWARM_SH), action, directory],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )


def parse_facts(text: str) -> dict[str, str]:
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            facts[key] = value
    return facts


def _ref(container: Any) -> str:
    return str(getattr(container, "id", container))


@dataclass
class SwarmNode:
    key: str  # "a" (manager) or "b" (worker)
    name: str  # hostname = swarm node name
    host: str  # unix://DIR/<key>/docker.sock
    client: Any  # docker.DockerClient
    addr: str  # address on the node link (10.120.0.x)
    netns: str  # the node's network namespace (ip netns name)
    node_id: str
    manager: bool
    overlay: str
    containers: list[str] = field(default_factory=list)

    @property
    def api(self) -> Any:
        return self.client.api

    def __repr__(self) -> str:
        return f"SwarmNode({self.key}: {self.name} {self.host})"

    # -- containers ----------------------------------------------------------------------

    def run(self, image: str, command: str | list[str] | None = None, *,
            name: str | None = None, network_mode: str | None = None,
            labels: dict[str, str] | None = None, **kw: Any) -> Any:
        """Run a detached container on this node (removed by cleanup); returns it reloaded."""
        name = name or unique_name(self.key)
        self.containers.append(name)
        c = self.client.containers.run(
            image, command, name=name, detach=True, network_mode=network_mode,
            labels={LABEL: SESSION_ID, **(labels or {})}, **kw,
        )
        c.reload()
        return c

    def pause(self, name: str | None = None, **kw: Any) -> Any:
        """A pod sandbox as cri-dockerd starts it: the pause image, network mode none."""
        name = name or unique_name(f"{self.key}-pod")
        labels = pod_labels(name, kw.pop("labels", {}))
        return self.run(PAUSE_IMAGE, name=name, network_mode="none", labels=labels, **kw)

    def busybox(self, command: str | list[str] | None = None, **kw: Any) -> Any:
        """A busybox container (``sleep`` unless a command is given)."""
        return self.run(BUSYBOX_IMAGE, command or ["sleep", "86400"], **kw)

    def sidecar(self, pod: Any, command: str | list[str] | None = None, **kw: Any) -> Any:
        """A busybox container in the network namespace of ``pod`` (container:<id> mode)."""
        return self.busybox(command, network_mode=f"container:{_ref(pod)}", **kw)

    def remove(self, container: Any) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(_ref(container), force=True, v=True)

    def cleanup(self) -> list[str]:
        """Remove the containers created through this node; returns the errors."""
        errors = remove_each(self.containers, self.remove, f"{self.key}: container")
        self.containers.clear()
        return errors

    # -- networks ------------------------------------------------------------------------

    def attach(self, container: Any, network: str | None = None, *,
               detach_none: bool = True, **connect_kw: Any) -> dict[str, Any]:
        """Connect a container to ``network`` (default: the overlay), disconnecting it from
        ``none`` first; returns its ``NetworkSettings.Networks[network]`` entry."""
        network = network or self.overlay
        ref = _ref(container)
        if detach_none:
            nets = self.api.inspect_container(ref)["NetworkSettings"]["Networks"] or {}
            if "none" in nets:
                self.api.disconnect_container_from_network(ref, "none")
        self.api.connect_container_to_network(ref, network, **connect_kw)
        return self.endpoint(ref, network)

    def detach(self, container: Any, network: str | None = None, **kw: Any) -> None:
        self.api.disconnect_container_from_network(_ref(container), network or self.overlay,
                                                   **kw)

    def endpoint(self, container: Any, network: str | None = None) -> dict[str, Any]:
        """``NetworkSettings.Networks[network]`` of a container (KeyError if absent)."""
        nets = self.api.inspect_container(_ref(container))["NetworkSettings"]["Networks"]
        return (nets or {})[network or self.overlay]

    def ip(self, container: Any, network: str | None = None) -> str:
        return self.endpoint(container, network)["IPAddress"]

    def network_visible(self, network: str | None = None) -> bool:
        """Does ``network inspect`` find the network here?  (On a worker a swarm network is
        404 until the first local attachment and again after the last one.)"""
        import docker

        try:
            self.api.inspect_network(network or self.overlay)
        except docker.errors.NotFound:
            return False
        return True

    def wait_network_visible(self, visible: bool, network: str | None = None,
                             timeout: float = 10.0) -> float:
        """Poll until network_visible() == visible; returns the seconds waited."""
        t0 = time.monotonic()
        while self.network_visible(network) != visible:
            if time.monotonic() - t0 > timeout:
                state = "visible" if visible else "gone"
                raise TimeoutError(f"{network or self.overlay} not {state} on {self.name} "
                                   f"after {timeout}s")
            time.sleep(0.05)
        return time.monotonic() - t0

    # -- inside containers ---------------------------------------------------------------

    def pid(self, container: Any) -> int:
        return int(self.api.inspect_container(_ref(container))["State"]["Pid"])

    def netns_exec(self, container: Any, *argv: str, check: bool = True,
                   timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a host command in the container's network namespace."""
        return netns_exec(self.pid(container), *argv, check=check, timeout=timeout)

    def exec(self, container: Any, cmd: list[str]) -> tuple[int, str]:
        """docker exec; returns (exit code, combined output)."""
        rc, out = self.client.containers.get(_ref(container)).exec_run(cmd)
        return rc, out.decode(errors="replace")

    def swarm_info(self) -> dict[str, Any]:
        return self.client.info()["Swarm"]


@dataclass
class SwarmNodes:
    dir: str
    a: SwarmNode  # manager
    b: SwarmNode  # worker
    overlay: str
    overlay_id: str
    subnet: str
    facts: dict[str, str]
    up_seconds: float
    networks: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> tuple[SwarmNode, SwarmNode]:
        return (self.a, self.b)

    @property
    def manager(self) -> SwarmNode:
        return self.a

    @property
    def worker(self) -> SwarmNode:
        return self.b

    def create_overlay(self, name: str | None = None, subnet: str | None = None, *,
                       attachable: bool = True, **kw: Any) -> str:
        """Create another overlay on the manager (removed by cleanup); returns its name."""
        from docker.types import IPAMConfig, IPAMPool

        name = name or unique_name("ovl")
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]) if subnet else None
        self.a.api.create_network(name, driver="overlay", attachable=attachable, ipam=ipam,
                                  labels={LABEL: SESSION_ID}, **kw)
        self.networks.append(name)
        return name

    def cleanup(self) -> None:
        """Remove what the helpers created (containers on both nodes, extra networks)."""
        errors = self.a.cleanup() + self.b.cleanup()
        errors += remove_each(self.networks, self._remove_network, "network")
        self.networks.clear()
        if errors:
            raise RuntimeError("swarm test resources not cleaned up:\n  " + "\n  ".join(errors))

    def _remove_network(self, name: str) -> None:
        import docker

        # A swarm network stays "in use" for a moment after its last attachment went.
        deadline = time.monotonic() + 15
        while True:
            try:
                self.a.api.remove_network(name)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def wait_tcp(self, client_node: SwarmNode, client: Any, ip: str, port: int,
                 expect: str, timeout: float = 20.0) -> tuple[float, int]:
        """``nc -w 2 IP PORT`` inside ``client`` (a busybox container on client_node) until the
        output contains ``expect``; returns (seconds, attempts).  The first packets across the
        overlay can be lost while the peers learn each other."""
        t0 = time.monotonic()
        attempts = 0
        out = ""
        while True:
            attempts += 1
            _rc, out = client_node.exec(client, ["nc", "-w", "2", ip, str(port)])
            if expect in out:
                return time.monotonic() - t0, attempts
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no {expect!r} from {ip}:{port} via {client_node.name} "
                                     f"after {attempts} attempts in {timeout}s: {out!r}")
            time.sleep(0.3)

    def down(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.client.close()
        proc = run_swarm_sh("down", self.dir, timeout=DOWN_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"swarm.sh down {self.dir} failed ({proc.returncode}):\n"
                               f"{proc.stderr[-3000:]}")


def _log_tail(directory: str, lines: int = 25) -> str:
    out = []
    for node in ("a", "b"):
        path = os.path.join(directory, node, "dockerd.log")
        with contextlib.suppress(OSError), open(path, errors="replace") as f:
            out.append(f"--- {path}\n" + "".join(f.readlines()[-lines:]))
    return "\n".join(out)


@contextlib.contextmanager
def swarm_nodes(*, overlay: str = DEFAULT_OVERLAY, subnet: str = DEFAULT_SUBNET,
                images: bool = True, keep_dir: bool = False) -> Iterator[SwarmNodes]:
    """Bring up the two-node swarm in a fresh short directory under /tmp; always tear it down.

    ``keep_dir`` (or C2S_KEEP_DIR=1) keeps the directory (dockerd logs) after ``down``.
    With C2S_DIR=DIR set, the swarm already up in DIR (``scripts/swarm.sh up DIR``) is used
    instead, and left up."""
    if os.geteuid() != 0:
        unavailable("the swarm harness needs root (network namespaces, dockerd)")
    if shutil.which("dockerd") is None:
        unavailable("dockerd is not installed (apt-get install docker.io)")
    try:
        import docker  # noqa: F401
    except ImportError as exc:
        unavailable(f"the docker SDK is not installed ({exc}): run scripts/bootstrap.sh")

    keep_dir = keep_dir or os.environ.get("C2S_KEEP_DIR", "") == "1"
    reuse = os.environ.get("C2S_DIR", "")
    if reuse:
        # A swarm the developer brought up (`scripts/swarm.sh up $C2S_DIR`): used as it is and
        # left up (only what the helpers created is removed).
        proc = run_swarm_sh("status", reuse, timeout=60)
        if proc.returncode != 0:
            unavailable(f"C2S_DIR={reuse}: no swarm is up there: {proc.stderr[-2000:]}")
        yield from _connect(reuse, parse_facts(proc.stdout), 0.0)
        return

    d = tempfile.mkdtemp(prefix="c2s.", dir="/tmp")  # short: socket paths < 108 bytes
    env = {"C2S_OVERLAY": overlay, "C2S_OVERLAY_SUBNET": subnet,
           "C2S_IMAGES": "1" if images else "0"}
    try:
        t0 = time.monotonic()
        try:
            proc = run_swarm_sh("up", d, env=env)
        except subprocess.TimeoutExpired:
            proc = None
        up_seconds = time.monotonic() - t0
        if proc is None or proc.returncode != 0:
            err = "timed out" if proc is None else proc.stderr[-3000:]
            unavailable(f"scripts/swarm.sh up {d} failed: {err}\n{_log_tail(d)}")
        assert proc is not None  # unavailable() raised otherwise
        yield from _connect(d, parse_facts(proc.stdout), up_seconds)
    finally:
        proc = run_swarm_sh("down", d, timeout=DOWN_TIMEOUT)
        if proc.returncode == 0 and not keep_dir:
            shutil.rmtree(d, ignore_errors=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/swarm.sh down {d} failed ({proc.returncode}):\n"
                               f"{proc.stderr[-3000:]}")


def _connect(d: str, facts: dict[str, str], up_seconds: float) -> Iterator[SwarmNodes]:
    """Yield the SwarmNodes of the facts printed by swarm.sh; close the clients after."""
    import docker

    clients: list[Any] = []
    try:

        def node(key: str, manager: bool) -> SwarmNode:
            k = key.upper()
            client = docker.DockerClient(base_url=facts[f"NODE_{k}_HOST"], version="auto",
                                         timeout=120)
            clients.append(client)
            return SwarmNode(
                key=key, name=facts[f"NODE_{k}_NAME"], host=facts[f"NODE_{k}_HOST"],
                client=client, addr=facts[f"NODE_{k}_ADDR"], netns=facts[f"NODE_{k}_NETNS"],
                node_id=facts[f"NODE_{k}_ID"], manager=manager, overlay=facts["OVERLAY"],
            )

        swarm = SwarmNodes(
            dir=d, a=node("a", True), b=node("b", False), overlay=facts["OVERLAY"],
            overlay_id=facts["OVERLAY_ID"], subnet=facts["OVERLAY_SUBNET"], facts=facts,
            up_seconds=up_seconds,
        )
        yield swarm
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def swarm_fixture(scope: str = "module", name: str = "swarm",
                  **kw: Any) -> Callable[..., Iterator[SwarmNodes]]:
    """A pytest fixture (default: module scope, named ``swarm``) yielding :class:`SwarmNodes`.
    Assign it at module level: ``swarm = swarm_fixture()``.  Keywords go to swarm_nodes()."""

    @pytest.fixture(scope=scope, name=name)  # type: ignore[call-overload]
    def _swarm() -> Iterator[SwarmNodes]:
        with swarm_nodes(**kw) as swarm:
            yield swarm

    return _swarm
