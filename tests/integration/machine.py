"""The tests' own processes and mounts on this machine: found by what their command lines or
mount points name (a test's own directory), stopped by PID, unmounted lazily; never anything
found by a broad name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T", str, bytes)  # what a Popen's pipes carry


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T when stopped, Z when a zombie), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    return state(pid) not in (None, "Z")


def command_lines() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process but this one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "cmdline").read_bytes()
            yield int(entry.name), [a.decode(errors="replace") for a in raw.split(b"\0")]


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text`."""
    return [pid for pid, argv in command_lines() if text in " ".join(argv)]


def processes_under(path: str) -> list[int]:
    """Pids of the processes one of whose arguments is `path` or a path under it (alone or
    as the value of an --option=)."""
    def names(a: str) -> bool:
        return a == path or a.startswith(path + "/") or f"={path}/" in a or f"={path}" == a

    return [pid for pid, argv in command_lines() if any(names(a) for a in argv[1:])]


def wait_gone(pids: Iterable[int], timeout: float) -> bool:
    """Until none of `pids` is alive; False if one still is after `timeout` seconds."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def send(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, wait, SIGKILL: one process we started."""
    send(pid, signal.SIGTERM)
    if not wait_gone([pid], timeout):
        send(pid, signal.SIGKILL)
        if not wait_gone([pid], 10):
            raise AssertionError(f"timed out after 10 s waiting for pid {pid} to die")


def kill_all_mentioning(text: str, timeout: float = 10) -> list[int]:
    """SIGKILL the processes processes_mentioning(text) finds; wait until they are gone."""
    pids = processes_mentioning(text)
    for pid in pids:
        send(pid, signal.SIGKILL)
    wait_gone(pids, timeout)
    return pids


@contextlib.contextmanager
def killed_at_the_end(proc: subprocess.Popen[T], timeout: float = 10
                      ) -> Iterator[subprocess.Popen[T]]:
    """`proc` for the block; SIGKILLed and reaped at its end if it still runs (a failure)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout)


def mounts_under(root: str) -> list[str]:
    """The mount points at `root` or below it."""
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    return [m for m in points if m == root or m.startswith(root + "/")]


def unmount_under(root: str | Path) -> list[str]:
    """Lazily unmount every mount point at or below `root`, deepest first; returns them."""
    mounts = mounts_under(str(root))
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], check=False, capture_output=True)
    return mounts
