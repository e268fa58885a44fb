"""Run the cni2cnm executable exactly as a CNI runtime does: env + stdin, JSON on stdout."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import machine

from cni2cnm.store import Store

CRI_DOCKERD_CNI_PATH = "/opt/cni/bin"

# The plugin starts a daemon on demand by default (config key `daemon`, CNI2CNM_DAEMON). Every
# process the tests start (podman and the plugin it runs, fault tests, the CLI) inherits these
# unless it chooses otherwise, so that no test starts a daemon on the machine's default socket
# by accident; Plugin.run below chooses the mode of each run explicitly, and the tests of the
# on-demand start (test_ondemand.py) set their own socket and mode.
os.environ.setdefault("CNI2CNM_DAEMON", "off")
os.environ.setdefault("CNI2CNM_DAEMON_SOCKET", "")


_PLUGIN_DIR: str | None = None


def plugin_executable() -> str:
    """The plugin file `cni2cnm install` places in a CNI bin dir, for this installation:
    the tests run the plugin exactly as a node does. Written once per test process into a
    private directory that is removed at exit."""
    global _PLUGIN_DIR
    if _PLUGIN_DIR is None:
        from cni2cnm.ops.install import wrapper_text

        d = tempfile.mkdtemp(prefix="c2c-bin-")
        os.chmod(d, 0o755)  # a test runs it as nobody too
        atexit.register(shutil.rmtree, d, True)
        plugin = Path(d, "cni2cnm")
        plugin.write_text(wrapper_text())
        plugin.chmod(0o755)
        _PLUGIN_DIR = d
    return str(Path(_PLUGIN_DIR, "cni2cnm"))


@dataclass
class Outcome:
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        assert self.stdout.strip(), f"{self.command}: empty stdout (stderr: {self.stderr})"
        return json.loads(self.stdout)

    def ok(self) -> Outcome:
        assert self.rc == 0, f"{self.command} failed rc={self.rc}: {self.stdout} {self.stderr}"
        return self

    def silent(self) -> Outcome:
        """Success with nothing on stdout (DEL, CHECK, GC, STATUS)."""
        self.ok()
        assert self.stdout == "", f"{self.command} printed {self.stdout!r}"
        return self

    def error(self, code: int) -> dict[str, Any]:
        assert self.rc != 0, f"{self.command} succeeded, expected error {code}: {self.stdout}"
        doc = self.doc
        assert isinstance(doc["code"], int)
        assert doc["code"] == code, f"{self.command}: expected code {code}, got {doc}"
        assert doc["msg"], doc
        return doc


@dataclass
class Plugin:
    """A CNI runtime's view of one network configuration that uses cni2cnm."""

    docker_host: str
    state_dir: str
    name: str
    cni_version: str = "1.0.0"
    conf_extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def on(cls, docker_host: str, resources: Any, network: str, **kw: Any) -> Plugin:
        """For `network` of the engine at `docker_host`, with a state directory of the test's
        own (removed with `resources`, a c2ctest.Resources)."""
        return cls(docker_host, str(resources.tmpdir() / "state"), network, **kw)

    def conf(self, **overrides: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": self.cni_version,
            "name": self.name,
            "type": "cni2cnm",
            "stateDir": self.state_dir,
            **self.conf_extra,
        }
        conf.update(overrides)
        return {k: v for k, v in conf.items() if v is not None}

    def environ(self, command: str, container_id: str, netns: str, ifname: str = "eth0",
                cni_args: str = "", env: dict[str, str] | None = None) -> dict[str, str]:
        """The plugin's environment as a runtime sets it, in this pass's daemon mode, then
        `env`."""
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DOCKER_HOST": self.docker_host,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": cni_args,
            "CNI_PATH": CRI_DOCKERD_CNI_PATH,
        }
        if "CNI2CNM_LOG_LEVEL" in os.environ:
            environ["CNI2CNM_LOG_LEVEL"] = os.environ["CNI2CNM_LOG_LEVEL"]
        # Through a `cni2cnm serve` daemon when CNI2CNM_TEST_DAEMON_SOCKET names its socket
        # (mode manual: a test daemon that died is never replaced by one started on demand);
        # else in-process (mode off, no socket), even if a daemon serves the default socket
        # on this machine: neither pass ever starts a daemon.
        daemon = daemon_pass_socket()
        environ["CNI2CNM_DAEMON_SOCKET"] = daemon
        environ["CNI2CNM_DAEMON"] = "manual" if daemon else "off"
        environ.update(env or {})
        return environ

    def netconf_bytes(self, conf: dict[str, Any] | None = None,
                      prev: dict[str, Any] | None = None) -> bytes:
        """What a runtime writes to the plugin's stdin: the config (this one's unless given)
        with `prev` as its prevResult."""
        doc = dict(conf if conf is not None else self.conf())
        if prev is not None:
            doc["prevResult"] = prev
        return json.dumps(doc).encode()

    def run(
        self,
        command: str,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        cni_args: str = "",
        conf: dict[str, Any] | None = None,
        prev: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        executable: str | None = None,
        stdin: bytes | None = None,
    ) -> Outcome:
        environ = self.environ(command, container_id, netns, ifname, cni_args, env)
        # In the daemon-mode pass every request must reach the daemon: a silent fallback to
        # in-process would make that pass test nothing. (A test stop point runs in-process
        # on purpose; VERSION never goes to the daemon.)
        daemon = daemon_pass_socket()
        must_forward = (daemon and environ["CNI2CNM_DAEMON_SOCKET"] == daemon
                        and "CNI2CNM_TEST_STOP_AT" not in environ and command != "VERSION")
        if must_forward:
            assert Path(daemon).is_socket(), f"the test daemon's socket {daemon} is gone"
        proc = subprocess.run(
            [executable or plugin_executable()],
            input=self.netconf_bytes(conf, prev) if stdin is None else stdin,
            env=environ,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        out = Outcome(command, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        return forwarded(out) if must_forward else out

    def start(self, command: str, container_id: str, netns: str, cni_args: str = "",
              conf: dict[str, Any] | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """The plugin started as `run` starts it, its stdin written and closed, not waited
        for: for a test that acts while it runs (communicate() gives its stdout, stderr)."""
        proc = subprocess.Popen([plugin_executable()], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.environ(command, container_id, netns,
                                                 cni_args=cni_args, env=env))
        STARTED.append(proc)
        assert proc.stdin is not None
        proc.stdin.write(self.netconf_bytes(conf).decode())
        proc.stdin.close()
        proc.stdin = None  # written and closed: communicate() must not flush it again
        return proc

    def start_until(self, point: str, container_id: str, netns: str, cni_args: str = "",
                    conf: dict[str, Any] | None = None) -> subprocess.Popen[str]:
        """An ADD that stops itself (SIGSTOP) at a test point of the plugin, in-process (a
        test point never goes through a daemon); SIGCONT lets it go on."""
        proc = self.start("ADD", container_id, netns, cni_args=cni_args, conf=conf,
                          env={**armed_hooks(), "CNI2CNM_TEST_STOP_AT": point})
        wait_stopped(proc, point)
        return proc

    def lock_path(self, container_id: str) -> str:
        """The container's lock file in the state directory (held while a request for it
        runs)."""
        digest = hashlib.sha256(container_id.encode()).hexdigest()[:32]
        return os.path.join(self.state_dir, "locks", digest)

    # ---- the store, read directly -----------------------------------------------------

    def records(self) -> list[Any]:
        return records(self.state_dir, self.name)


# Every plugin process `Plugin.start` made: a test that fails while one is stopped at a test
# point (SIGSTOP) would otherwise leave it stopped for ever, holding its container's lock
# (the conftest's autouse `no_plugin_left` kills what is still running after each test).
STARTED: list[subprocess.Popen[str]] = []


def kill_started() -> list[int]:
    """SIGKILL and reap every process Plugin.start made that still runs; their PIDs."""
    left = [p for p in STARTED if p.poll() is None]
    for proc in left:
        proc.kill()
        proc.communicate(timeout=30)
    STARTED.clear()
    return [p.pid for p in left]


def records(state_dir: str, network: str) -> list[Any]:
    """The attachments the store in `state_dir` holds for `network`."""
    if not Path(state_dir, "attachments.db").exists():
        return []
    with Store(state_dir) as store:
        return store.list(network)


def daemon_pass_socket() -> str:
    """The socket of the daemon the daemon-mode pass of scripts/test.sh runs every request
    through, or "" (in-process pass)."""
    return os.environ.get("CNI2CNM_TEST_DAEMON_SOCKET", "")


def forwarded(out: Outcome) -> Outcome:
    """The executable forwarded the request to the daemon and did not run it in-process."""
    assert "running in-process" not in out.stderr and "running it again" not in \
        out.stderr, f"{out.command} did not go through the daemon: {out.stderr}"
    return out


def wait_stopped(proc: subprocess.Popen[str], point: str, timeout: float = 60) -> None:
    """Until the plugin process has stopped itself (SIGSTOP) at its test point."""
    deadline = time.monotonic() + timeout
    while machine.state(proc.pid) != "T":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"the plugin did not reach {point}: {out!r} {err!r}")
        time.sleep(0.02)


def wait_holding(pid: int, path: str, timeout: float = 30) -> None:
    """Until process `pid` has `path` open (e.g. a request waiting for a container's lock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == path:
                    return
        time.sleep(0.02)
    raise TimeoutError(f"pid {pid} never opened {path}")


def cri_args(container_id: str, pod: str = "pod", namespace: str = "default") -> str:
    """CNI_ARGS exactly as cri-dockerd sends them."""
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};"
        f"K8S_POD_INFRA_CONTAINER_ID={container_id}"
    )


def proc_netns(container: Any) -> str:
    container.reload()
    return f"/proc/{container.attrs['State']['Pid']}/ns/net"


def ip_addrs(netns: str) -> dict[str, dict[str, Any]]:
    """`ip -j addr` inside a namespace: ifname -> {mac, addrs (CIDR, global scope)}."""
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-j", "addr"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    links = {}
    for link in json.loads(out):
        addrs = [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        ]
        links[link["ifname"]] = {"mac": link.get("address", ""), "addrs": addrs}
    return links


def endpoint(container: Any, network_name: str) -> dict[str, Any] | None:
    container.reload()
    return (container.attrs["NetworkSettings"]["Networks"] or {}).get(network_name)


def served(out: Outcome) -> Outcome:
    """The daemon answered (the executable did not fall back to running in-process)."""
    assert "in-process" not in out.stderr, out.stderr
    return out


_ARMED: str | None = None


def armed_hooks() -> dict[str, str]:
    """The environment that arms the plugin's test hook (cni2cnm/testhook.py): a root-owned
    0600 file with the magic content, made once per test process in a private directory
    removed at exit."""
    global _ARMED
    if _ARMED is None:
        from cni2cnm import testhook

        d = tempfile.mkdtemp(prefix="c2ct-hooks-")
        atexit.register(shutil.rmtree, d, True)
        f = Path(d, "armed")
        f.write_bytes(testhook.ARMED)
        f.chmod(0o600)
        _ARMED = str(f)
    return {"CNI2CNM_TEST_HOOKS": _ARMED}
