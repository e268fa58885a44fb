"""The metrics endpoint is bounded like the unix socket (issue 19, item 1), on a real `cni2cnm
serve`: many connections that send half a request line and stall (loopback only, a bounded
number, for a bounded time) leave the daemon's thread count bounded, are dropped after the
request deadline, an oversized request is refused, and plugin requests over the unix socket
are answered meanwhile."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from daemonrun import running_daemon
from pluginrun import Plugin, served

from cni2cnm.daemon.server import METRICS_CONNECTIONS, METRICS_REQUEST_MAX, REQUEST_DEADLINE

pytestmark = pytest.mark.own_modes  # runs its own daemon

STALLED = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def closed_by_peer(s: socket.socket) -> bool:
    """The daemon closed this connection (end of file, or reset)."""
    try:
        s.settimeout(0.05)
        return s.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


def test_stalled_and_oversized_metrics_requests_are_bounded(plugin: Plugin) -> None:
    port = free_port()
    with running_daemon("--metrics-address", f"127.0.0.1:{port}") as d, \
            contextlib.ExitStack() as stack:
        url = f"http://127.0.0.1:{port}"
        assert urllib.request.urlopen(f"{url}/healthz", timeout=10).status == 200
        before = threads_of(d.proc.pid)
        conns = []
        for _ in range(STALLED):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            s.sendall(b"GET /metr")  # half a request line, then nothing
            conns.append(s)
        time.sleep(1.0)
        during = threads_of(d.proc.pid)
        assert during <= before + METRICS_CONNECTIONS, (before, during)
        # the unix socket is answered meanwhile
        t0 = time.monotonic()
        served(plugin.run("STATUS", "", "", conf=plugin.conf(cniVersion="1.1.0"),
                          env=d.env)).silent()
        assert time.monotonic() - t0 < 30
        # every stalled connection is dropped: at once above the cap, after the deadline below
        deadline = time.monotonic() + REQUEST_DEADLINE + 5
        while time.monotonic() < deadline and not all(map(closed_by_peer, conns)):
            time.sleep(0.2)
        assert all(map(closed_by_peer, conns)), sum(map(closed_by_peer, conns))
        assert threads_of(d.proc.pid) <= before + 1
        # an oversized request is refused
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nX-Pad: " + b"a" * METRICS_REQUEST_MAX
                      + b"\r\n\r\n")
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.0 431"), reply[:200]
        # and the endpoint still answers
        assert urllib.request.urlopen(f"{url}/metrics", timeout=10).status == 200
