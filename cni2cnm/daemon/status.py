"""What runs on a daemon socket, for `cni2cnm version`, `doctor` and `install`: asks for the
hello only (the daemon logs a connection that ended before a request), and can stop a daemon
the plugin started on demand."""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from dataclasses import asdict, dataclass

from cni2cnm import __version__
from cni2cnm.daemon import wire


@dataclass(frozen=True)
class DaemonStatus:
    socket: str
    running: bool
    version: str = ""
    pid: int = 0
    started: str = ""  # on-demand, systemd or manual
    build: str = ""
    metrics: str = ""
    note: str = ""  # why not running, or what is odd

    @property
    def current(self) -> bool:
        """Runs this version of this installation: the plugin uses it."""
        return self.running and self.version == __version__ and self.build == wire.build_id()

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "current": self.current}

    def describe(self) -> str:
        if not self.running:
            return f"not running on {self.socket} ({self.note})"
        metrics = f", metrics on http://{self.metrics}/metrics" if self.metrics else ""
        return (f"running on {self.socket}: pid {self.pid}, cni2cnm {self.version}, started "
                f"{self.started or 'by hand'}{metrics}"
                + ("" if self.current else f" ({self.note})"))


def probe(path: str, timeout: float = 2.0) -> DaemonStatus:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except FileNotFoundError:
            return DaemonStatus(path, False, note="no socket")
        except OSError as e:
            return DaemonStatus(path, False, note=f"socket does not accept connections: "
                                                  f"{e.strerror or e}")
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        peer_pid = struct.unpack("3i", creds)[0]
        try:
            hello = wire.parse_hello(wire.recv(s))
        except (OSError, wire.WireError) as e:
            return DaemonStatus(path, False, pid=peer_pid, note=f"no hello within {timeout:g} "
                                                                f"s: {e}")
    pid = int(hello.pid) if hello.pid.isdigit() else peer_pid
    note = ""
    if hello.protocol != wire.PROTOCOL:
        note = f"speaks protocol {hello.protocol}, not {wire.PROTOCOL}"
    elif hello.version != __version__:
        note = f"another version than this {__version__}"
    elif hello.build != wire.build_id():
        note = f"another installation than this ({wire.build_id()})"
    return DaemonStatus(path, True, hello.version, pid, hello.started, hello.build,
                        hello.metrics, note)


def stop_on_demand(path: str, *, stale_only: bool, timeout: float = 30.0
                   ) -> DaemonStatus | None:
    """SIGTERM the daemon on `path` if the plugin started it on demand and, with stale_only
    (install, after an upgrade), it runs another version or installation; without (uninstall),
    it runs this installation, of any version. Returns its status when it was stopped, once
    it has exited (or after `timeout`)."""
    st = probe(path)
    if not st.running or st.started != wire.ON_DEMAND or st.pid <= 1:
        return None
    if st.current if stale_only else st.build != wire.build_id():
        return None
    try:
        os.kill(st.pid, signal.SIGTERM)
    except ProcessLookupError:
        return st
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(st.pid):
        time.sleep(0.05)
    return st


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
