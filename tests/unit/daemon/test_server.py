"""cni2cnm.daemon.server: socket and directory permissions, concurrency, shutdown, refusal
of other users, and its limits (deadline, frame size, idle timeout)."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cni2cnm.daemon import client, wire
from cni2cnm.daemon.server import DaemonError, Server

from ..fakes import env_for, netconf, stdin_of
from .conftest import (
    Recorder,
    me,
    serving,
)


def test_socket_and_directory_permissions(sockdir: Path) -> None:
    path = sockdir / "run" / "cni2cnm.sock"
    with serving(path, Recorder()):
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert not path.exists(), "the socket is removed when the server stops"


def test_refuses_a_directory_others_can_write(sockdir: Path) -> None:
    os.chmod(sockdir, 0o777)
    with pytest.raises(DaemonError, match="writable by group or others"):
        Server(str(sockdir / "d.sock")).bind()


def test_refuses_a_path_that_is_not_a_socket(sockdir: Path) -> None:
    (sockdir / "d.sock").write_text("")
    with pytest.raises(DaemonError, match="not a socket"):
        Server(str(sockdir / "d.sock")).bind()


def test_refuses_to_start_twice_and_replaces_a_stale_socket(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    with serving(path, Recorder()), pytest.raises(DaemonError, match="another daemon"):
        Server(str(path)).bind()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # stale
    recorder = Recorder(reply=(0, "ok\n", ""))
    with serving(path, recorder):
        out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
    assert isinstance(out, client.Reply) and out.stdout == "ok\n"


def test_concurrent_requests(sockdir: Path) -> None:
    """Ten requests in flight at once: each handler waits for all ten to have started."""
    n = 10
    barrier = threading.Barrier(n, timeout=20)

    def handler(env: dict[str, str], data: bytes) -> tuple[int, str, str]:
        barrier.wait()
        return 0, env["CNI_CONTAINERID"] + "\n", ""

    path = sockdir / "d.sock"
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        results[i] = client.forward(
            env_for("ADD", CNI_CONTAINERID=f"c{i}", **{wire.SOCKET_ENV: str(path)}), b"{}")

    with serving(path, handler):
        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert {i: r.stdout for i, r in results.items()} == {i: f"c{i}\n" for i in range(n)}


def test_stop_removes_the_socket_then_finishes_requests_in_flight(sockdir: Path) -> None:
    gate = threading.Event()
    recorder = Recorder(reply=(0, "done\n", ""), gate=gate)
    path = sockdir / "d.sock"
    server = Server(str(path), recorder, allowed_uids=me())
    server.bind()
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    result: list[Any] = []
    caller = threading.Thread(target=lambda: result.append(client.forward(
        env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")))
    caller.start()
    assert recorder.started.wait(10)
    server.stop()
    deadline = time.monotonic() + 5
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not path.exists(), "the socket must go at once, before requests in flight finish"
    assert loop.is_alive() and server.inflight == 1
    out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
    assert isinstance(out, client.Fallback) and "no daemon socket" in out.reason
    gate.set()
    caller.join(10)
    loop.join(10)
    assert not loop.is_alive()
    assert isinstance(result[0], client.Reply) and result[0].stdout == "done\n"


def test_too_many_requests_in_flight_run_in_process(sockdir: Path) -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    path = sockdir / "d.sock"
    with serving(path, recorder, max_inflight=1):
        first = threading.Thread(target=client.forward,
                                 args=(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}"))
        first.start()
        assert recorder.started.wait(10)
        out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
        gate.set()
        first.join(10)
    assert isinstance(out, client.Fallback) and out.warn and "did not answer" in out.reason
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("version", ["0.3.1", "9.9.9"])
def test_other_users_get_a_cni_error(sockdir: Path, version: str) -> None:
    recorder = Recorder()
    path = sockdir / "d.sock"
    with serving(path, recorder, allowed_uids=frozenset({4321})):
        out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}),
                             stdin_of(netconf(version)))
    assert isinstance(out, client.Reply) and out.exit == 1
    doc = json.loads(out.stdout)
    # the request is never read, so the error is in the newest version
    assert doc["cniVersion"] == "1.1.0" and doc["code"] == 5 and doc["msg"] == "permission denied"
    assert f"runs as uid {os.geteuid()}" in doc["details"]
    assert recorder.requests == []


def test_local_only_variables_never_reach_the_plugin(sockdir: Path) -> None:
    recorder = Recorder()
    path = sockdir / "d.sock"
    with serving(path, recorder), socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        wire.recv(s)
        wire.send(s, wire.request({"CNI_COMMAND": "ADD", "CNI2CNM_TEST_STOP_AT": "after-intent",
                                   wire.SOCKET_ENV: "/x"}, b"{}"))
        wire.recv(s)
    assert recorder.requests == [({"CNI_COMMAND": "ADD"}, b"{}")]


def test_the_peer_is_refused_before_anything_is_read(sockdir: Path) -> None:
    """Another user gets the error right after the hello, without sending a request."""
    recorder = Recorder()
    path = sockdir / "d.sock"
    with serving(path, recorder, allowed_uids=frozenset({4321})), \
            socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        assert wire.parse_hello(wire.recv(s)).protocol == wire.PROTOCOL
        status, out, _ = wire.parse_reply(wire.recv(s))  # nothing sent: still answered
    assert status == 1 and json.loads(out)["msg"] == "permission denied"
    assert recorder.requests == []


def test_one_deadline_for_the_whole_request(sockdir: Path) -> None:
    """A byte every 0.1 s does not keep the connection beyond the request deadline."""
    path = sockdir / "d.sock"
    with serving(path, Recorder(), request_deadline=0.5), socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        wire.recv(s)
        t0 = time.monotonic()
        dropped = False
        for _ in range(50):  # up to 5 s of trickling
            try:
                s.sendall(b"\x00")
            except OSError:
                dropped = True
                break
            time.sleep(0.1)
        took = time.monotonic() - t0
    assert dropped and took < 3, f"connection kept {took:.1f} s"


def test_a_frame_over_the_limit_is_refused_before_its_body(sockdir: Path) -> None:
    assert wire.MAX_FRAME <= 2 << 20
    path = sockdir / "d.sock"
    recorder = Recorder()
    with serving(path, recorder), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        wire.recv(s)
        s.sendall((8 << 20).to_bytes(4, "big"))  # announces 8 MiB, sends none of it
        assert s.recv(1) == b""  # closed at once
    assert recorder.requests == []


def test_stop_closes_connections_that_sent_no_request(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    server = Server(str(path), Recorder(), allowed_uids=me(), request_deadline=60)
    server.bind()
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        wire.recv(s)  # connected and greeted; never sends a request
        server.stop("SIGTERM")
        loop.join(5)
        assert not loop.is_alive(), "an idle connection held the daemon"
        s.settimeout(5)
        assert s.recv(1) == b""


def test_idle_timeout_stops_the_server(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    server = Server(str(path), Recorder(reply=(0, "ok\n", "")), allowed_uids=me(),
                    idle_timeout=0.5)
    server.bind()
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    out = client.forward(env_for("DEL", **{wire.SOCKET_ENV: str(path)}), b"{}")
    assert isinstance(out, client.Reply)
    loop.join(10)
    assert not loop.is_alive() and server.stop_reason == "idle" and not path.exists()


def test_work_to_keep_holds_off_the_idle_timeout(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    keep = threading.Event()
    keep.set()
    server = Server(str(path), Recorder(reply=(0, "ok\n", "")), allowed_uids=me(),
                    idle_timeout=0.3, keep_alive=keep.is_set)
    server.bind()
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    loop.join(1.5)
    assert loop.is_alive()  # proxy attachments or pending DELs: the keeper must stay
    keep.clear()
    loop.join(10)
    assert not loop.is_alive() and server.stop_reason == "idle" and not path.exists()

