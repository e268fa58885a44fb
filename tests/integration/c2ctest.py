"""Helpers for cni2cnm's integration tests (used by conftest.py and importable by tests:
``from c2ctest import pause_container, busybox_container, netns_exec``).

Everything a test creates through :class:`Resources` is named ``c2ct-<random>`` and labelled
``c2ct.session=<id>``, and is removed by :meth:`Resources.close` even when the test failed:
containers first (``rm -f``), then networks, then network namespaces, then temporary
directories.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"

PREFIX = "c2ct-"
LABEL = "c2ct.session"
SESSION_ID = secrets.token_hex(4)

BUSYBOX_IMAGE = "local/busybox:latest"
PAUSE_IMAGE = "local/pause:3.10"

# Test subnets: 10.<240 + xdist worker>.<N>.0/24 with N from a per-process counter, so every
# network a session creates has its own subnet (auto-allocation collides between engines).
_subnet_counter = itertools.count(0)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true: integration tests must never be skipped in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: integration tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def require(*tools: str, root: str = "") -> None:
    """unavailable() unless every tool is on PATH and, when `root` says why it is needed,
    this runs as root."""
    if root and os.geteuid() != 0:
        unavailable(root)
    for tool in tools:
        if shutil.which(tool) is None:
            unavailable(f"{tool} is missing: run scripts/bootstrap.sh")


def mark_tests_under(directory: Path, items: list[pytest.Item],
                     mark: pytest.MarkDecorator) -> None:
    """Give `mark` to every collected test in `directory` (a conftest's own)."""
    for item in items:
        if directory in Path(str(item.path)).resolve().parents:
            item.add_marker(mark)


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in worker if ch.isdigit())
    return int(digits or 0) % 16


def next_subnet() -> tuple[str, str]:
    """The next test subnets of this process: (IPv4 /24, IPv6 /64)."""
    n = next(_subnet_counter)
    second = 240 + _worker_index()
    third = n % 256
    return f"10.{second}.{third}.0/24", f"fd00:c2c:{second:x}{third:02x}::/64"


def unique_name(kind: str = "") -> str:
    return f"{PREFIX}{kind + '-' if kind else ''}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Images:
    busybox: str = BUSYBOX_IMAGE
    pause: str = PAUSE_IMAGE


def sweep_session(client: Any) -> None:
    """Remove whatever this session labelled and a test failed to remove."""
    flt = {"label": f"{LABEL}={SESSION_ID}"}
    with contextlib.suppress(Exception):
        for c in client.containers.list(all=True, filters=flt):
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)
        for n in client.networks.list(filters=flt):
            with contextlib.suppress(Exception):
                n.remove()


@dataclass
class Engine:
    """The throwaway engine started by scripts/test.sh (or scripts/dockerd.sh), for fault
    injection."""

    dir: str
    host: str
    client: Any

    def _run(self, action: str) -> None:
        subprocess.run(
            ["bash", str(SCRIPTS / "dockerd.sh"), action, self.dir],
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )

    def restart(self) -> None:
        """Stop dockerd (SIGTERM, data kept) and start it again with the same flags."""
        self._run("restart")
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL dockerd only (containers' shims survive); start() brings it back."""
        self._run("kill")

    def start(self) -> None:
        self._run("start")
        self.wait_ready()

    def ensure_up(self) -> None:
        """Start the engine if it does not answer (after a test left it killed)."""
        try:
            self.client.ping()
        except Exception:
            self.start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


class Resources(contextlib.AbstractContextManager["Resources"]):
    """Creates Docker networks, containers, network namespaces and temporary directories for
    one test and removes them all in :meth:`close` (at the end of a ``with`` block too)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.containers: list[Any] = []
        self.networks: list[Any] = []
        self.netns_names: list[str] = []
        self.dirs: list[str] = []
        self._cleanups: list[Callable[[], Any]] = []
        self.closed = False

    # -- networks ------------------------------------------------------------------------

    def network(
        self,
        name: str | None = None,
        subnet: str | None = None,
        *,
        gateway: str | None = None,
        driver: str = "bridge",
        ipv6: bool = False,
        ipv6_subnet: str | None = None,
        labels: dict[str, str] | None = None,
        **kw: Any,
    ) -> Any:
        """Create a network with an explicit subnet (the next 10.24x.N.0/24 unless given).

        ``ipv6=True`` (or an ``ipv6_subnet``) makes it dual stack, with fd00:c2c:XXNN::/64 by
        default.  Extra keywords go to ``client.networks.create`` (internal, options, ...).
        Returns the (reloaded) docker Network; see :func:`network_subnets`.
        """
        import docker
        from docker.types import IPAMConfig, IPAMPool

        name = name or unique_name("net")
        auto = subnet is None
        want_v6 = ipv6 or ipv6_subnet is not None
        for _attempt in range(32):
            v4, v6 = next_subnet()
            pools = [IPAMPool(subnet=subnet or v4, gateway=gateway)]
            if want_v6:
                pools.append(IPAMPool(subnet=ipv6_subnet or v6))
            try:
                net = self.client.networks.create(
                    name,
                    driver=driver,
                    ipam=IPAMConfig(pool_configs=pools),
                    enable_ipv6=want_v6,
                    labels={LABEL: SESSION_ID, **(labels or {})},
                    check_duplicate=True,
                    **kw,
                )
            except docker.errors.APIError as exc:
                # A leftover network of an earlier run may hold an automatic subnet.
                if auto and "overlap" in str(exc.explanation or exc).lower():
                    continue
                raise
            self.networks.append(net)
            net.reload()
            return net
        raise RuntimeError("no free test subnet found")

    def next_subnet(self) -> str:
        """A distinct IPv4 /24 for a test that builds its own network."""
        return next_subnet()[0]

    # -- containers ----------------------------------------------------------------------

    def container(
        self,
        image: str,
        name: str | None = None,
        network_mode: str | None = None,
        command: str | list[str] | None = None,
        labels: dict[str, str] | None = None,
        **kw: Any,
    ) -> Any:
        """Run a detached container; returns the reloaded docker Container."""
        name = name or unique_name()
        labels = {LABEL: SESSION_ID, **(labels or {})}
        try:
            c = self.client.containers.run(
                image,
                command,
                name=name,
                detach=True,
                network_mode=network_mode,
                labels=labels,
                **kw,
            )
        except Exception:
            # Created but failed to start: still ours to remove.
            self.containers.append(name)
            raise
        self.containers.append(c)
        c.reload()
        return c

    def track_container(self, container: Any) -> Any:
        """Remove a container created elsewhere (id, name or Container) at teardown."""
        self.containers.append(container)
        return container

    def track_network(self, network: Any) -> Any:
        """Remove a network created elsewhere (id, name or Network) at teardown."""
        self.networks.append(network)
        return network

    # -- namespaces and directories ------------------------------------------------------

    def netns(self, name: str | None = None) -> str:
        """``ip netns add`` a namespace (lo up); returns its path /run/netns/NAME."""
        if os.geteuid() != 0:
            unavailable("network namespaces need root")
        name = name or unique_name("ns")
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.netns_names.append(name)
        subprocess.run(
            ["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True
        )
        return f"/run/netns/{name}"

    def attach_netns(self, container: Any, name: str | None = None) -> str:
        """``ip netns attach`` the container's namespace, as cnitool users do; returns its
        path /run/netns/NAME, deleted at teardown (unless the test deleted it)."""
        name = name or unique_name("ns")
        container.reload()
        subprocess.run(["ip", "netns", "attach", name, str(container.attrs["State"]["Pid"])],
                       check=True)
        self.netns_names.append(name)
        return f"/run/netns/{name}"

    def tmpdir(self) -> Path:
        """A fresh directory, removed at teardown."""
        d = tempfile.mkdtemp(prefix=PREFIX)
        self.dirs.append(d)
        return Path(d)

    def add_cleanup(self, fn: Callable[[], Any]) -> None:
        """Run fn at teardown before anything else (last added first)."""
        self._cleanups.append(fn)

    # -- teardown ------------------------------------------------------------------------

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove everything; raises after trying all if something could not be removed."""
        if self.closed:
            return
        self.closed = True
        errors = remove_each(self._cleanups, lambda fn: fn(), "cleanup")
        errors += remove_each(self.containers, lambda ref: self.client.api.remove_container(
            ref, force=True, v=True), "container")
        errors += remove_each(self.networks, self._remove_network, "network")

        for ns in reversed(self.netns_names):
            if not os.path.exists(f"/run/netns/{ns}"):
                continue
            proc = subprocess.run(["ip", "netns", "delete", ns], capture_output=True, text=True)
            if proc.returncode != 0:
                errors.append(f"netns {ns}: {proc.stderr.strip()}")

        for d in reversed(self.dirs):
            shutil.rmtree(d, ignore_errors=True)

        if errors:
            raise RuntimeError("test resources not cleaned up:\n  " + "\n  ".join(errors))

    def _remove_network(self, ref: str) -> None:
        import docker

        try:
            self.client.api.remove_network(ref)
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                raise
        # Endpoints still attached (containers the test did not create): force them off.
        # Force-disconnect looks the endpoint up by container name, so try that too.
        info = self.client.api.inspect_network(ref)
        for cid, ep in (info.get("Containers") or {}).items():
            for target in (cid, ep.get("Name") or cid):
                with contextlib.suppress(docker.errors.APIError):
                    self.client.api.disconnect_container_from_network(target, ref, force=True)
        self.client.api.remove_network(ref)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def remove_each(items: list[Any], remove: Callable[[Any], object], what: str) -> list[str]:
    """remove() each item (a container or network, or its id or name; a cleanup function),
    the last made first; one that is already gone (404) counts as removed. Returns the
    errors, one line each, instead of raising the first."""
    import docker

    errors = []
    for item in reversed(items):
        ref = getattr(item, "id", item)
        try:
            remove(ref)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            errors.append(f"{what} {ref}: {exc}")
    return errors


def pod_labels(name: str, extra: dict[str, str]) -> dict[str, str]:
    """The labels cri-dockerd gives the sandbox of pod `name` (default namespace), and
    `extra`."""
    return {
        "io.kubernetes.docker.type": "podsandbox",
        "io.kubernetes.container.name": "POD",
        "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.namespace": "default",
        **extra,
    }


def pause_container(
    resources: Resources, images: Images, name: str | None = None, **kw: Any
) -> Any:
    """A pod sandbox as cri-dockerd starts it: the pause image with network mode ``none``
    (the CNI plugin then attaches it to a network)."""
    name = name or unique_name("pod")
    labels = pod_labels(name, kw.pop("labels", {}))
    return resources.container(images.pause, name=name, network_mode="none", labels=labels, **kw)


def busybox_container(
    resources: Resources,
    images: Images,
    name: str | None = None,
    command: str | list[str] | None = None,
    **kw: Any,
) -> Any:
    """A busybox container that stays up (``sleep``) unless a command is given.  busybox
    sleep ignores SIGTERM as PID 1: remove it with force, or stop it with timeout 0."""
    if command is None:
        command = ["sleep", "86400"]
    return resources.container(images.busybox, name=name, command=command, **kw)


def network_subnets(network: Any) -> list[str]:
    """The subnets of a docker Network (as reported by inspect)."""
    return [
        cfg["Subnet"]
        for cfg in (network.attrs.get("IPAM", {}).get("Config") or [])
        if cfg.get("Subnet")
    ]


def netns_exec(
    target: int | str, *argv: str, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a host command (e.g. ``ip -j addr``) inside a netns: a PID (its /proc/PID/ns/net)
    or a path (/run/netns/NAME, a container's SandboxKey)."""
    path = f"/proc/{target}/ns/net" if isinstance(target, int) else target
    return subprocess.run(
        ["nsenter", f"--net={path}", *argv],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


LIBCNI_STATE = Path("/var/lib/cni")  # libcni's result cache and host-local's leases


@contextlib.contextmanager
def libcni_state_left_as_found() -> Iterator[None]:
    """podman's CNI backend writes into the node's /var/lib/cni (libcni's result cache under
    results/, host-local leases of the networks it creates under networks/) and has no option
    to move them: whatever appears there while the block runs is removed afterwards, and
    nothing that was there before is touched."""
    def entries() -> set[Path]:
        found = {LIBCNI_STATE} if LIBCNI_STATE.exists() else set()
        for sub in ("networks", "results"):
            d = LIBCNI_STATE / sub
            if d.is_dir():
                found |= {d, *d.iterdir()}
        return found

    before = entries()
    try:
        yield
    finally:
        for path in sorted(entries() - before, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
