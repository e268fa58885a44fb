"""A `cni2cnm serve` process for integration tests: started on a socket in a given directory
(start_daemon) or a fresh one (running_daemon), stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOCKET_ENV = "CNI2CNM_DAEMON_SOCKET"
MODE_ENV = "CNI2CNM_DAEMON"


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    path: Path
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """Use this daemon; never start another (a test may have killed this one)."""
        return {SOCKET_ENV: str(self.path), MODE_ENV: "manual"}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_daemon(directory: Path, *extra: str) -> Daemon:
    path, log = directory / "cni2cnm.sock", directory / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "CNI2CNM_LOG_LEVEL"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cni2cnm.daemon", "--socket", str(path), "--log-level",
             "debug", *extra], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env)
    daemon = Daemon(proc, path, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {daemon.log_text()}")
        if path.exists():
            with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
                s.connect(str(path))
                return daemon
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"serve did not come up: {daemon.log_text()}")


@contextlib.contextmanager
def running_daemon(*extra: str) -> Iterator[Daemon]:
    """`cni2cnm serve` on a socket in a fresh directory. At the end, if it still runs (a test
    may have killed it), it must exit 0 on SIGTERM; after a failure it is killed. The
    directory is always removed."""
    directory = Path(tempfile.mkdtemp(prefix="c2cd-"))  # short: socket paths are limited
    daemon = None
    try:
        daemon = start_daemon(directory, *extra)
        yield daemon
        if daemon.proc.poll() is None:
            rc = daemon.stop()
            assert rc == 0, f"serve exited {rc} on SIGTERM: {daemon.log_text()[-2000:]}"
    finally:
        if daemon is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text` (a test's own directory:
    how the tests find the daemons the plugin started on demand, and only those)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def kill_all_mentioning(text: str, timeout: float = 10) -> list[int]:
    """SIGKILL the processes processes_mentioning(text) finds; wait until they are gone."""
    pids = processes_mentioning(text)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return pids


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
