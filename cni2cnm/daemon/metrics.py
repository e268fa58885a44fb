"""`cni2cnm serve --metrics-address HOST:PORT`: Prometheus text on /metrics, and /healthz.

Only the daemon imports this module (and prometheus_client), and only with the option: the
plugin's forwarding path never does. The metrics:

    cni2cnm_requests_total{command,code}         requests answered (code: 0, or the CNI code)
    cni2cnm_request_duration_seconds{command}     histogram of the time to answer them
    cni2cnm_requests_in_flight                   requests running now
    cni2cnm_in_process_fallbacks_total{kind}     requests an executable ran in-process
                                                 although a daemon should have answered
    cni2cnm_engine_calls_total{method}           Docker engine calls by requests
    cni2cnm_engine_errors_total{method,kind}     those that failed, by kind of error

Fallbacks are counted by the executables: each appends one line (its kind: absent, refused,
no_hello, version, replace, send, no_reply...) to the `fallbacks` file in the socket's
directory (client.count_fallback); the daemon reads the new lines at every scrape.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from cni2cnm.daemon.server import METRICS_CONNECTIONS, METRICS_REQUEST_MAX, REQUEST_DEADLINE

log = logging.getLogger("cni2cnm-serve")

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROTATE_AT = 1 << 20  # the fallbacks file is read from the start again after this size
WARN_EVERY = 60.0  # seconds: connections closed above the cap are logged at most this often


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT too)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class Metrics:
    """The daemon's metrics (server.Observer and engines.EngineCounter)."""

    def __init__(self, fallbacks_file: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("cni2cnm_requests", "Requests answered, by CNI command and "
                                "result code (0: success)", ["command", "code"], registry=r)
        self.duration = Histogram("cni2cnm_request_duration_seconds", "Time to answer a "
                                  "request", ["command"], buckets=BUCKETS, registry=r)
        self.inflight = Gauge("cni2cnm_requests_in_flight", "Requests running now",
                              registry=r)
        self.fallbacks = Counter("cni2cnm_in_process_fallbacks", "Requests the executable ran "
                                 "in-process although a daemon should have answered",
                                 ["kind"], registry=r)
        self.engine_calls = Counter("cni2cnm_engine_calls", "Docker engine calls", ["method"],
                                    registry=r)
        self.engine_errors = Counter("cni2cnm_engine_errors", "Docker engine calls that "
                                     "failed, by kind", ["method", "kind"], registry=r)
        self.fallbacks_file = fallbacks_file
        self._offset = 0
        self._lock = threading.Lock()

    # ---- server.Observer ----------------------------------------------------------------

    def started(self) -> None:
        self.inflight.inc()

    def finished(self, command: str, status: int, stdout: str, seconds: float) -> None:
        self.inflight.dec()
        self.requests.labels(command, str(_code(status, stdout))).inc()
        self.duration.labels(command).observe(seconds)

    # ---- engines.EngineCounter ----------------------------------------------------------

    def engine_call(self, method: str, error: str | None) -> None:
        self.engine_calls.labels(method).inc()
        if error is not None:
            self.engine_errors.labels(method, error).inc()

    # ---- the executables' fallbacks ------------------------------------------------------

    def read_fallbacks(self) -> None:
        """Count the lines added to the fallbacks file since the last read."""
        with self._lock:
            try:
                with open(self.fallbacks_file, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < self._offset:
                        self._offset = 0  # replaced by hand
                    f.seek(self._offset)
                    chunk = f.read()
            except FileNotFoundError:
                return
            except OSError as e:
                log.warning("cannot read %s: %s", self.fallbacks_file, e)
                return
            complete = chunk[:chunk.rfind(b"\n") + 1]
            self._offset += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                self.fallbacks.labels(line.strip()[:32] or "unknown").inc()
            if self._offset >= ROTATE_AT and len(complete) == len(chunk):
                with contextlib.suppress(OSError):
                    os.truncate(self.fallbacks_file, 0)  # lines appended meanwhile may be lost
                    self._offset = 0

    def render(self) -> bytes:
        self.read_fallbacks()
        return generate_latest(self.registry)


def _code(status: int, stdout: str) -> int:
    if status == 0:
        return 0
    try:
        code = json.loads(stdout).get("code")
    except (ValueError, AttributeError):
        return 999
    return code if isinstance(code, int) else 999


class MetricsServer:
    """/metrics and /healthz over HTTP, in a thread; bounded as the unix socket is (server.py):
    at most `max_connections` served at once (more are closed at accept), each within one
    deadline for the whole request and reply (a client that stalls is dropped), a request of at
    most `request_max` bytes (line and headers; more is answered 431 and closed). One request
    per connection (HTTP/1.0)."""

    def __init__(self, address: str, metrics: Metrics, healthy: Any, *,
                 max_connections: int = METRICS_CONNECTIONS,
                 deadline: float = REQUEST_DEADLINE,
                 request_max: int = METRICS_REQUEST_MAX) -> None:
        host, port = parse_address(address)
        handler = _handler(metrics, healthy, deadline, request_max)
        self.httpd = _BoundedHTTPServer((host, port), handler, max_connections)
        bound_host, bound_port = self.httpd.server_address[:2]  # the port 0 chose
        shown = str(bound_host)  # a str for AF_INET and AF_INET6
        self.address = f"[{shown}]:{bound_port}" if ":" in shown else f"{shown}:{bound_port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        self.refused = 0
        self._warned = -WARN_EVERY
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            self.refused += 1
            if time.monotonic() - self._warned >= WARN_EVERY:  # a flood writes one line
                self._warned = time.monotonic()
                log.warning("metrics: %d connections open: closing new ones (%d so far, the "
                            "last from %s)", self.max_connections, self.refused,
                            client_address[0])
            return
        try:
            super().process_request(request, client_address)  # starts its thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics: error serving %s", client_address[0], exc_info=True)


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes, all of them within one deadline and at most `limit` of them
    (then end of file, and `exhausted` says why)."""

    def __init__(self, conn: socket.socket, deadline: float, limit: int) -> None:
        super().__init__()
        self.conn, self.deadline, self.left = conn, deadline, limit
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive within the deadline")
        if self.left <= 0:
            self.exhausted = True
            return 0
        self.conn.settimeout(remaining)
        n = self.conn.recv_into(memoryview(buffer)[:self.left])
        self.left -= n
        return n


def _handler(metrics: Metrics, healthy: Any, deadline: float,
             request_max: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.until = time.monotonic() + deadline
            self.reader = _DeadlineReader(self.connection, self.until, request_max)
            self.rfile = io.BufferedReader(self.reader)

        def parse_request(self) -> bool:
            ok = super().parse_request()
            if ok and self.reader.exhausted:
                self.send_error(431, f"request larger than {request_max} bytes")
                return False
            return ok

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = bool(healthy())
                self._send(200 if ok else 503, b"ok\n" if ok else b"stopping\n",
                           "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n",
                           "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            # the reply within what is left of the deadline (sendall: one timeout for all)
            self.connection.settimeout(max(self.until - time.monotonic(), 0.001))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    return Handler
