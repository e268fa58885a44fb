"""The metrics endpoint's bounds, with small ones (the integration test uses the daemon's):
one deadline for the whole request however slowly it trickles in, a connection cap, a request
size limit."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni2cnm.daemon.metrics import Metrics, MetricsServer


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1:0", Metrics(str(tmp_path / "fallbacks")), lambda: True,
                           max_connections=2, deadline=0.6, request_max=256)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(exporter: MetricsServer) -> socket.socket:
    host, port = exporter.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def test_a_request_trickling_in_is_dropped_at_the_deadline(exporter: MetricsServer) -> None:
    with connect(exporter) as s:
        t0 = time.monotonic()
        with contextlib.suppress(OSError):
            for c in b"GET /metrics HTTP/1.0\r\n":
                s.sendall(bytes([c]))  # a byte at a time: never idle as long as a deadline
                time.sleep(0.1)
        s.settimeout(5)
        assert s.recv(100) == b""
    assert 0.5 < time.monotonic() - t0 < 3


def test_connections_above_the_cap_are_closed(exporter: MetricsServer) -> None:
    with connect(exporter) as a, connect(exporter) as b:
        a.sendall(b"GET")
        b.sendall(b"GET")
        time.sleep(0.2)
        base = threading.active_count()
        with connect(exporter) as c:
            c.settimeout(5)
            assert c.recv(100) == b""  # at once, not after the deadline
        assert threading.active_count() <= base


def test_an_oversized_request_is_refused(exporter: MetricsServer) -> None:
    with connect(exporter) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nX-Pad: " + b"a" * 300 + b"\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100).startswith(b"HTTP/1.0 431")


def test_a_small_request_is_answered(exporter: MetricsServer) -> None:
    with connect(exporter) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100).startswith(b"HTTP/1.0 200")


def test_an_ipv6_loopback_address_is_served(tmp_path: Path) -> None:
    import urllib.request

    server = MetricsServer("[::1]:0", Metrics(str(tmp_path / "fallbacks")), lambda: True)
    server.start()
    try:
        assert server.address.startswith("[::1]:")
        assert urllib.request.urlopen(f"http://{server.address}/healthz", timeout=5).status == 200
    finally:
        server.stop()
