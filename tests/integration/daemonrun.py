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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine import killed_at_the_end
from pluginrun import Plugin, cri_args, proc_netns, wait_holding

from cni2cnm.store import Store

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


def start_daemon(directory: Path, *extra: str, env: Mapping[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> Daemon:
    """`cni2cnm serve` on DIRECTORY/cni2cnm.sock, logging at debug to DIRECTORY/serve.log,
    with this process's environment but CNI2CNM_LOG_LEVEL (or `env`), its command line after
    `prefix` (e.g. nsenter); returned once the socket accepts connections."""
    path, log = directory / "cni2cnm.sock", directory / "serve.log"
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "CNI2CNM_LOG_LEVEL"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "cni2cnm.daemon", "--socket", str(path),
             "--log-level", "debug", *extra], stdout=f, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env)
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


def add_while_the_daemon_dies(plugin: Plugin, pod: Any, env: dict[str, str],
                              pid: int) -> None:
    """An ADD that the daemon `pid` (which `env` points the plugin to) has taken, waiting for
    the pod's lock (held here), when the daemon is SIGKILLed: the executable runs it again
    in-process and the pod is attached."""
    with Store(plugin.state_dir) as store, store.lock(pod.id):
        proc = plugin.start("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                            env=env)
        wait_holding(pid, plugin.lock_path(pod.id))
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert "accepted the request but did not reply" in err and "again in-process" in err
    [rec] = plugin.records()
    assert rec.state == "attached" and rec.docker_id == pod.id


@contextlib.contextmanager
def stopped_at_the_end(daemon: Daemon) -> Iterator[Daemon]:
    """At the end, if it still runs (a test may have killed it), the daemon must exit 0 on
    SIGTERM; after a failure it is killed."""
    with killed_at_the_end(daemon.proc, 30):
        yield daemon
        if daemon.proc.poll() is None:
            rc = daemon.stop()
            assert rc == 0, f"serve exited {rc} on SIGTERM: {daemon.log_text()[-2000:]}"


@contextlib.contextmanager
def running_daemon(*extra: str) -> Iterator[Daemon]:
    """`cni2cnm serve` on a socket in a fresh directory, stopped_at_the_end; the directory is
    always removed."""
    directory = Path(tempfile.mkdtemp(prefix="c2cd-"))  # short: socket paths are limited
    try:
        with stopped_at_the_end(start_daemon(directory, *extra)) as daemon:
            yield daemon
    finally:
        shutil.rmtree(directory, ignore_errors=True)
