"""Shared by the daemon's unit tests (no Docker): a short socket directory, a server in a
thread, a recording handler, the cases whose answers must equal in-process runs, and a guard
that keeps forward() in this process from starting a daemon."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cni2cnm.daemon import logroute, starter
from cni2cnm.daemon.runner import Runner
from cni2cnm.daemon.server import Server

from ..fakes import env_for, netconf, stdin_of

UNREACHABLE = "unix:///nonexistent/c2c/docker.sock"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A fresh 0700 directory with a short path (unix socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="c2cd-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_starting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """forward() in this process never starts a daemon: it records the paths it would start
    one on (REAL_START and the integration tests start real ones)."""
    started: list[str] = []

    def fake_start(path: str, replacing: bool = False) -> str:
        started.append(path)
        return "(a test: no daemon started)"

    monkeypatch.setattr(starter, "start", fake_start)
    return started


@contextlib.contextmanager
def request_logging() -> Iterator[None]:
    """The daemon's per-request log routing, undone at the end (it owns the "cni2cnm"
    logger while it lasts)."""
    import logging

    logger = logging.getLogger("cni2cnm")
    saved = logger.handlers[:], logger.level, logger.propagate
    logroute.install()
    try:
        yield
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def me() -> frozenset[int]:
    """The uids a test server accepts: root's, or this user's when tests run unprivileged."""
    return frozenset({0, os.geteuid()})


@contextlib.contextmanager
def serving(path: Path, handler: Callable[..., Any] | None = None, **kw: Any) -> Iterator[Server]:
    """A Server on `path`, accepting in a thread until the block ends."""
    kw.setdefault("allowed_uids", me())
    server = Server(str(path), handler or Runner(), **kw)
    server.bind()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.stop()
        t.join(30)
        assert not t.is_alive(), "the server did not stop"


class Recorder:
    """A handler that records requests and answers with a fixed reply."""

    def __init__(self, reply: tuple[int, str, str] = (0, "", ""),
                 gate: threading.Event | None = None) -> None:
        self.reply = reply
        self.gate = gate
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.started = threading.Event()

    def __call__(self, env: dict[str, str], data: bytes) -> tuple[int, str, str]:
        self.requests.append((env, data))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        return self.reply


def parity_cases(state_dir: str) -> list[tuple[str, dict[str, str], bytes]]:
    conf = netconf("1.0.0", stateDir=state_dir)
    return [
        ("missing CNI_NETNS", env_for("ADD", CNI_NETNS=None), stdin_of(conf)),
        ("bad CNI_ARGS", env_for("ADD", CNI_ARGS="FOO=1"), stdin_of(conf)),
        ("unsupported version", env_for("ADD"), stdin_of(netconf("9.9.9"))),
        ("not JSON", env_for("DEL"), b"{"),
        ("not an object", env_for("DEL"), b"[1]"),
        ("invalid config", env_for("ADD"), stdin_of(netconf("1.0.0", name=""))),
        ("CHECK on 0.3.1", env_for("CHECK"), stdin_of(netconf("0.3.1"))),
        ("engine unreachable", env_for("ADD", CNI_NETNS="/proc/self/ns/net"), stdin_of(conf)),
        ("DEL of nothing", env_for("DEL"), stdin_of(conf)),
        ("STATUS, engine unreachable", env_for("STATUS"),
         stdin_of(netconf("1.1.0", stateDir=state_dir))),
        ("GC of nothing", env_for("GC"), stdin_of(netconf("1.1.0", stateDir=state_dir))),
    ]

