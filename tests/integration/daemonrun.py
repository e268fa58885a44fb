"""A `cni2cnm serve` process for integration tests: started on a socket in a given directory,
stopped with SIGTERM (see test_daemon.py and test_soak.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SOCKET_ENV = "CNI2CNM_DAEMON_SOCKET"


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    path: Path
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return {SOCKET_ENV: str(self.path)}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_daemon(directory: Path) -> Daemon:
    path, log = directory / "cni2cnm.sock", directory / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "CNI2CNM_LOG_LEVEL"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cni2cnm.daemon", "--socket", str(path), "--log-level",
             "debug"], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
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
