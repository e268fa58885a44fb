"""cni2cnm.daemon.starter: one start at a time, safe directories, an isolated daemon."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cni2cnm.daemon import starter, wire

REAL_START = starter.start  # before the no_starting fixture replaces it


def test_starter_takes_turns_and_refuses_unsafe_directories(sockdir: Path) -> None:
    import fcntl

    run = sockdir / "run"
    run.mkdir(mode=0o700)
    with open(run / starter.LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert REAL_START(str(run / "d.sock")) == "another process is starting the daemon"
    os.chmod(run, 0o777)
    assert "is writable by group or others" in REAL_START(str(run / "d.sock"))
    assert not (run / "d.sock").exists()


def test_starter_makes_its_directory_safely(sockdir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """No link is followed and nothing takes the caller's umask (as the daemon's own bind)."""
    elsewhere = sockdir / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (sockdir / "link").symlink_to(elsewhere)
    assert "not starting a daemon" in REAL_START(str(sockdir / "link" / "d.sock"))
    assert list(elsewhere.iterdir()) == []  # no start.lock made through the link

    def no_fork() -> int:
        raise OSError(0, "no fork in this test")

    monkeypatch.setattr(starter.os, "fork", no_fork)  # stop before a daemon would start
    deep = sockdir / "a" / "b"
    old = os.umask(0)
    try:
        assert "no fork in this test" in REAL_START(str(deep / "d.sock"))
    finally:
        os.umask(old)
    assert (os.stat(sockdir / "a").st_mode & 0o777, os.stat(deep).st_mode & 0o777) == (
        0o755, 0o700)
    assert os.stat(deep / starter.LOCK_FILE).st_mode & 0o777 == 0o600


def test_daemon_argv_runs_this_installation_isolated() -> None:
    argv = starter.daemon_argv("/run/x/d.sock", 3, "/run/x")
    assert argv[:3] == [sys.executable, "-I", "-c"]
    assert repr(os.path.dirname(wire.build_id())) in argv[3]
    assert argv[4:] == ["--socket", "/run/x/d.sock", "--started", "on-demand",
                        "--idle-timeout", "600", "--lock-fd", "3",
                        "--log-file", "/run/x/serve.log", "--priority", "0"]

