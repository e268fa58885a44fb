"""Run the cni2cnm executable exactly as a CNI runtime does: env + stdin, JSON on stdout."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        doc = dict(conf if conf is not None else self.conf())
        if prev is not None:
            doc["prevResult"] = prev
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
        daemon = os.environ.get("CNI2CNM_TEST_DAEMON_SOCKET", "")
        environ["CNI2CNM_DAEMON_SOCKET"] = daemon
        environ["CNI2CNM_DAEMON"] = "manual" if daemon else "off"
        environ.update(env or {})
        # In the daemon-mode pass every request must reach the daemon: a silent fallback to
        # in-process would make that pass test nothing. (A test stop point runs in-process
        # on purpose; VERSION never goes to the daemon.)
        must_forward = (daemon and environ["CNI2CNM_DAEMON_SOCKET"] == daemon
                        and "CNI2CNM_TEST_STOP_AT" not in environ and command != "VERSION")
        if must_forward:
            assert Path(daemon).is_socket(), f"the test daemon's socket {daemon} is gone"
        proc = subprocess.run(
            [executable or plugin_executable()],
            input=json.dumps(doc).encode() if stdin is None else stdin,
            env=environ,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        out = Outcome(command, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        if must_forward:
            assert "running in-process" not in out.stderr and "running it again" not in \
                out.stderr, f"{command} did not go through the daemon: {out.stderr}"
        return out

    # ---- the store, read directly -----------------------------------------------------

    def records(self) -> list[Any]:
        if not Path(self.state_dir, "attachments.db").exists():
            return []
        with Store(self.state_dir) as store:
            return store.list(self.name)


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
