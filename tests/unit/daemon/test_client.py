"""cni2cnm.daemon.client: which socket and mode it uses, what it forwards, and each fallback to
an in-process run (no socket, stale, hung, another version, dying, slow, another user's)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cni2cnm import __version__
from cni2cnm.daemon import client, wire

from ..fakes import env_for, netconf, stdin_of
from .conftest import (
    Recorder,
    serving,
)


def fake_daemon(path: Path, script: Callable[[socket.socket], None]) -> threading.Thread:
    """A listener that runs `script` on its first connection (to fake broken daemons)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                script(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("environ, conf, expected", [
    ({}, {}, wire.DEFAULT_SOCKET),
    ({}, {"daemonSocket": "/run/x.sock"}, "/run/x.sock"),
    ({wire.SOCKET_ENV: "/env.sock"}, {"daemonSocket": "/run/x.sock"}, "/env.sock"),
    ({wire.SOCKET_ENV: ""}, {"daemonSocket": "/run/x.sock"}, None),
    ({}, {"daemonSocket": ""}, None),
    ({}, {"daemonSocket": 7}, wire.DEFAULT_SOCKET),
])
def test_socket_path(environ: dict[str, str], conf: dict[str, Any], expected: str | None) -> None:
    assert client.socket_path(environ, json.dumps(conf).encode()) == expected


@pytest.mark.parametrize("conf, expected", [
    ({}, 150.0), ({"dockerTimeout": 10}, 150.0), ({"dockerTimeout": 100}, 300.0),
    ({"dockerTimeout": True}, 150.0), ({"dockerTimeout": "100"}, 150.0),
    ({"dockerTimeout": 1e9}, 150.0),
])
def test_reply_timeout(conf: dict[str, Any], expected: float) -> None:
    assert client.reply_timeout(json.dumps(conf).encode()) == expected


@pytest.mark.parametrize("command, forwarded", [
    ("ADD", True), ("DEL", True), ("CHECK", True), ("GC", True), ("STATUS", True),
    ("VERSION", False), ("", False), ("add", False),
])
def test_which_commands_are_forwarded(command: str, forwarded: bool) -> None:
    assert client.forwarded({"CNI_COMMAND": command}) is forwarded


def test_no_socket_is_an_info_fallback_that_starts_a_daemon(sockdir: Path,
                                                              no_starting: list[str]) -> None:
    path = str(sockdir / "none.sock")
    out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: path}), b"{}")
    assert isinstance(out, client.Fallback) and not out.warn
    assert "no daemon socket" in out.reason and "(a test: no daemon started)" in out.reason
    assert no_starting == [path]
    assert (sockdir / client.FALLBACKS).read_text() == "absent\n"


@pytest.mark.parametrize("environ, conf, mode", [
    ({}, {}, "auto"),
    ({}, {"daemon": "off"}, "off"),
    ({}, {"daemon": "manual"}, "manual"),
    ({wire.MODE_ENV: "off"}, {"daemon": "auto"}, "off"),
    ({}, {"daemon": "sometimes"}, "manual"),  # the config model rejects it: never start
    ({}, {"daemon": 1}, "manual"),
])
def test_daemon_mode(environ: dict[str, str], conf: dict[str, Any], mode: str) -> None:
    assert client.daemon_mode(environ, json.dumps(conf).encode()) == mode


@pytest.mark.parametrize("mode", ["manual", "off"])
def test_only_auto_starts_a_daemon(sockdir: Path, no_starting: list[str], mode: str) -> None:
    path = str(sockdir / "none.sock")
    out = client.forward(env_for("DEL", **{wire.SOCKET_ENV: path, wire.MODE_ENV: mode}), b"{}")
    assert isinstance(out, client.Fallback) and no_starting == []
    assert ("daemon off" in out.reason) is (mode == "off")
    conf = stdin_of(netconf(daemon=mode))
    out = client.forward(env_for("DEL", **{wire.SOCKET_ENV: path}), conf)
    assert isinstance(out, client.Fallback) and no_starting == []


def test_empty_socket_path_disables_the_daemon() -> None:
    out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: ""}), b"{}")
    assert isinstance(out, client.Fallback) and not out.warn and "disabled" in out.reason
    conf = stdin_of(netconf(daemonSocket=""))
    out = client.forward(env_for("ADD"), conf)
    assert isinstance(out, client.Fallback) and "disabled" in out.reason


def test_test_stop_point_runs_in_process(sockdir: Path) -> None:
    recorder = Recorder()
    with serving(sockdir / "d.sock", recorder):
        out = client.forward(env_for("ADD", CNI2CNM_TEST_STOP_AT="after-connect",
                                     **{wire.SOCKET_ENV: str(sockdir / "d.sock")}), b"{}")
    assert isinstance(out, client.Fallback) and "CNI2CNM_TEST_STOP_AT" in out.reason
    assert recorder.requests == []


def test_stale_socket_is_a_warning_fallback(sockdir: Path) -> None:
    path = sockdir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: what a killed daemon leaves
    t0 = time.monotonic()
    out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
    assert isinstance(out, client.Fallback) and out.warn
    assert "does not accept connections (connection refused)" in out.reason
    assert "(a test: no daemon started)" in out.reason  # a killed daemon is replaced
    assert time.monotonic() - t0 < 1


def test_daemon_that_never_greets(sockdir: Path) -> None:
    """Listening but hung (e.g. SIGSTOPped): connect succeeds, the hello never comes."""
    path = sockdir / "hung.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(4)
        t0 = time.monotonic()
        out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}",
                             hello_timeout=0.3)
        assert isinstance(out, client.Fallback) and out.warn
        assert "did not answer within 0.3 s (timed out)" in out.reason
        assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("greeting, why", [
    (wire.hello("0.0.1", 1, wire.build_id()), "runs cni2cnm 0.0.1 (protocol 3)"),
    (wire.hello(__version__, 1, "/elsewhere"), "runs another installation of cni2cnm"),
    # on demand, but the pid it gives is not the socket's: not stopped, only bypassed
    (wire.hello("0.0.1", 1, "/x", wire.ON_DEMAND), "runs cni2cnm 0.0.1 (protocol 3)"),
    (b"cni2cnm\x002\x000.1.0\x007", "runs cni2cnm 0.1.0 (protocol 2)"),
    (b'{"protocol": 1, "version": "0.1.0", "pid": 1}', "speaks another protocol"),  # 1: JSON
])
def test_daemon_of_another_version_or_protocol(sockdir: Path, greeting: bytes, why: str) -> None:
    got: list[bytes] = []

    def other_daemon(conn: socket.socket) -> None:
        wire.send(conn, greeting)
        conn.settimeout(2)
        with contextlib.suppress(OSError):
            got.append(conn.recv(10))

    path = sockdir / "other.sock"
    t = fake_daemon(path, other_daemon)
    out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
    t.join(5)
    assert isinstance(out, client.Fallback) and out.warn
    assert why in out.reason and "restart the daemon" in out.reason
    assert got == [b""], "no request may be sent to a daemon of another version"


def test_daemon_that_dies_after_taking_the_request(sockdir: Path) -> None:
    def dying(conn: socket.socket) -> None:
        wire.send(conn, wire.hello(__version__, 4242, wire.build_id()))
        wire.recv(conn)  # takes the request, then goes away

    path = sockdir / "dies.sock"
    fake_daemon(path, dying)
    out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
    assert isinstance(out, client.Fallback) and out.warn
    assert "(pid 4242) accepted the request but did not reply" in out.reason
    assert "running it again in-process" in out.reason


def test_daemon_that_does_not_reply_in_time(sockdir: Path) -> None:
    release = threading.Event()

    def slow(conn: socket.socket) -> None:
        wire.send(conn, wire.hello(__version__, 4242, wire.build_id()))
        wire.recv(conn)
        release.wait(10)

    path = sockdir / "slow.sock"
    fake_daemon(path, slow)
    out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}",
                         reply_timeout_s=0.3)
    release.set()
    assert isinstance(out, client.Fallback) and "did not reply (timed out)" in out.reason


def test_socket_of_another_user_is_not_used(sockdir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(client, "_peer_credentials", lambda sock: (1, 4321))
    with serving(sockdir / "d.sock", recorder):
        out = client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(sockdir / "d.sock")}),
                             b"{}")
    assert isinstance(out, client.Fallback) and out.warn
    assert "uid 4321, not root" in out.reason
    assert recorder.requests == []


def test_reply_is_passed_through(sockdir: Path) -> None:
    recorder = Recorder(reply=(1, '{"code": 7}\n', "a log line\n"))
    environ = env_for("DEL", DOCKER_HOST="tcp://x:1", CNI2CNM_LOG_LEVEL="info",
                      CNI2CNM_TEST_UNRELATED="1", HOME="/root",
                      **{wire.SOCKET_ENV: str(sockdir / "d.sock")})
    with serving(sockdir / "d.sock", recorder):
        out = client.forward(environ, b"\x00binary\xff")
    assert isinstance(out, client.Reply)
    assert (out.exit, out.stdout, out.stderr) == (1, '{"code": 7}\n', "a log line\n")
    [(env, data)] = recorder.requests
    assert data == b"\x00binary\xff"
    assert env == wire.forwarded_env(environ)
    assert "HOME" not in env and wire.SOCKET_ENV not in env and env["DOCKER_HOST"] == "tcp://x:1"


@pytest.mark.parametrize("path", ["\ud800", "/run/c2c\0x"])
def test_an_unusable_socket_path_runs_in_process_without_a_traceback(path: str) -> None:
    data = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm",
                       "daemonSocket": path}).encode()
    started: list[str] = []
    outcome = client.forward(env_for("ADD"), data, start=lambda p, r: started.append(p) or "")
    assert isinstance(outcome, client.Fallback) and "unusable" in outcome.reason
    assert started == []

