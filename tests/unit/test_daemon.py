"""The daemon without Docker: wire format, the executable's client and its fallbacks, the
server (permissions, concurrency, shutdown, refusal of other users), and byte-for-byte parity
of its answers with in-process runs for every answer that needs no engine. The executable is
run as a process, as a runtime runs it, to check that forwarding imports only the standard
library. tests/integration/test_daemon.py does the same against a real engine."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cni2cnm import __version__
from cni2cnm.cni import skel
from cni2cnm.daemon import client, logroute, starter, wire
from cni2cnm.daemon.runner import Runner
from cni2cnm.daemon.server import DaemonError, Server
from cni2cnm.entry import load_plugin
from cni2cnm.plugin.config import PluginConf

from .fakes import env_for, netconf, stdin_of

HEAVY = ("docker", "pydantic", "pydantic_core", "click", "requests", "urllib3")
# Not needed to forward a request either, and each costs start-up time (site: up to 15 ms;
# socket and json with re and enum: ~12 ms).
LEAN = ("site", "socket", "json", "re", "enum", "typing", "selectors")
UNREACHABLE = "unix:///nonexistent/c2c/docker.sock"
REAL_START = starter.start  # before the no_starting fixture replaces it


# ==== helpers ===================================================================================


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


def executable_env(command: str = "ADD", sock: Path | str = "", **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_HOST": UNREACHABLE,
           wire.SOCKET_ENV: str(sock), wire.MODE_ENV: "manual", **env_for(command)}
    env.update(extra)
    return env


def run_executable(env: dict[str, str], data: bytes, *pyflags: str,
                   code: str = "from cni2cnm.entry import main; main()"
                   ) -> subprocess.CompletedProcess[bytes]:
    """The plugin executable as a runtime runs it (env + stdin), in a fresh interpreter."""
    return subprocess.run([sys.executable, *pyflags, "-c", code], input=data, env=env,
                          capture_output=True, timeout=60, check=False)


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


# ==== wire ======================================================================================


def test_frames_round_trip() -> None:
    a, b = socket.socketpair()
    with a, b:
        body = "é\u2603".encode() + bytes(range(256))
        wire.send(a, body)
        assert wire.recv(b) == body


def test_request_carries_any_stdin_bytes_and_environment() -> None:
    data = bytes(range(256)) + b'{"cniVersion": "1.0.0"}'
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=x=y", "EMPTY": "", "T": "é\udcff"}
    assert wire.parse_request(wire.request(env, data)) == (env, data)
    assert wire.parse_request(wire.request({}, b"")) == ({}, b"")


def test_reply_and_hello_round_trip() -> None:
    assert wire.parse_reply(wire.reply(7, '{"code": 7}\n', "log é\n")) == (
        7, '{"code": 7}\n', "log é\n")
    assert wire.parse_reply(wire.reply(0, "", "")) == (0, "", "")
    h = wire.parse_hello(wire.hello("1.2.3", 42, "/opt/x", wire.ON_DEMAND, "127.0.0.1:9"))
    assert (h.protocol, h.version, h.pid, h.build, h.started, h.metrics) == (
        wire.PROTOCOL, "1.2.3", "42", "/opt/x", wire.ON_DEMAND, "127.0.0.1:9")
    # protocol 2 said less; protocol 1 greeted with JSON: "another protocol", not misread
    old = wire.parse_hello(b"cni2cnm\x002\x000.1.0\x007")
    assert (old.protocol, old.version, old.pid, old.build, old.started) == (2, "0.1.0", "7",
                                                                             "", "")
    assert wire.parse_hello(b'{"protocol": 1, "version": "0.1.0", "pid": 1}').protocol == 0


@pytest.mark.parametrize("raw, why", [
    (b"", "connection closed"),
    (b"\x00\x00\x00\x05{}", "after 2 of 5 bytes"),
    (b"\xff\xff\xff\xff", "exceeds"),
])
def test_bad_frames(raw: bytes, why: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(wire.WireError, match=why):
            wire.recv(b)


@pytest.mark.parametrize("body", [
    b"",
    b"\x00\x00",
    b"\x00\x00\x00\x09A=1",
    b"\x00\x00\x00\x03ABC",
    b"\x00\x00\x00\x04=abc",
])
def test_bad_requests(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_request(body)


@pytest.mark.parametrize("body", [b"", b"\x00\x00\x00", b"\x00\x00\x00\x00\x09{}"])
def test_bad_replies(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_reply(body)


def test_reply_exit_status_must_fit() -> None:
    with pytest.raises(wire.WireError):
        wire.reply(256, "", "")


@pytest.mark.parametrize("data, key, value", [
    (b'{"daemonSocket": "/x.sock"}', "daemonSocket", "/x.sock"),
    (b'{"other": "daemonSocket"}', "daemonSocket", None),
    (b'{"daemon\\u0053ocket": "/escaped.sock"}', "daemonSocket", "/escaped.sock"),
    (b'{"name": "n"}', "daemonSocket", None),
    (b"not json daemonSocket", "daemonSocket", None),
    (b'{"dockerTimeout": 90}', "dockerTimeout", 90),
])
def test_config_value_reads_json_only_when_the_key_can_be_there(data: bytes, key: str,
                                                               value: Any) -> None:
    assert wire.config_value(data, key) == value


def test_forwarded_environment() -> None:
    environ = {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1", "DOCKER_HOST": "tcp://h:2375",
               "CNI2CNM_LOG_LEVEL": "debug", "CNI2CNM_TEST_STOP_AT": "after-connect",
               wire.SOCKET_ENV: "/x.sock", wire.MODE_ENV: "off", "PATH": "/bin", "HOME": "/root",
               "DOCKER_CONFIG": "/etc"}
    assert wire.forwarded_env(environ) == {
        "CNI_COMMAND": "ADD", "CNI_ARGS": "A=1", "DOCKER_HOST": "tcp://h:2375",
        "CNI2CNM_LOG_LEVEL": "debug"}


# ==== the client's choices ======================================================================


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


# ==== the server ================================================================================


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
    with pytest.raises(DaemonError, match="writable by this user only"):
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


# ==== parity with in-process runs (no engine needed) ===========================================


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


def test_answers_equal_in_process_dispatch(sockdir: Path, tmp_path: Path) -> None:
    cases = parity_cases(str(tmp_path / "state"))
    expected = []
    for _, env, data in cases:
        env = {**env, "DOCKER_HOST": UNREACHABLE}
        out = io.StringIO()
        rc = skel.dispatch(lambda env=env: load_plugin(env), env, io.BytesIO(data), out)
        expected.append((rc, out.getvalue()))
    path = sockdir / "d.sock"
    with request_logging(), serving(path):
        for (name, env, data), want in zip(cases, expected, strict=True):
            env = {**env, "DOCKER_HOST": UNREACHABLE, wire.SOCKET_ENV: str(path)}
            got = client.forward(env, data)
            assert isinstance(got, client.Reply), f"{name}: {got.reason}"  # type: ignore[union-attr]
            assert (got.exit, got.stdout) == want, name


def test_executable_gives_the_same_bytes_through_the_daemon(sockdir: Path,
                                                            tmp_path: Path) -> None:
    path = sockdir / "d.sock"
    with request_logging(), serving(path) as server:
        for name, env, data in parity_cases(str(tmp_path / "state")):
            inproc = run_executable(executable_env(**{**env, wire.SOCKET_ENV: ""}), data)
            served = run_executable(executable_env(**{**env, wire.SOCKET_ENV: str(path)}), data)
            assert (served.returncode, served.stdout) == (inproc.returncode, inproc.stdout), name
            assert b"running in-process" not in served.stderr, name
        assert server.served == len(parity_cases(""))


def test_requests_log_to_their_own_stderr_at_their_own_level(sockdir: Path,
                                                             tmp_path: Path) -> None:
    conf = stdin_of(netconf("1.0.0", stateDir=str(tmp_path)))
    path = sockdir / "d.sock"
    with request_logging(), serving(path):
        def ask(**extra: str) -> client.Reply:
            env = env_for("DEL", DOCKER_HOST=UNREACHABLE, CNI_CONTAINERID="quiet",
                          **{wire.SOCKET_ENV: str(path)}, **extra)
            out = client.forward(env, conf)
            assert isinstance(out, client.Reply)
            return out

        quiet, loud = ask(), ask(CNI2CNM_LOG_LEVEL="debug")
    assert quiet.stderr == ""
    assert " DEBUG cni2cnm.skel: DEL container=quiet" in loud.stderr
    assert "nothing recorded" in loud.stderr


# ==== the executable's client path ==============================================================


def test_forwarding_imports_only_the_standard_library(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    recorder = Recorder(reply=(1, '{"cniVersion": "1.0.0", "code": 7, "msg": "m"}\n', "log\n"))
    probe = ("import sys\nfrom cni2cnm.entry import run_plugin\nrc = run_plugin()\n"
             f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
             "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\nsys.exit(rc)\n")
    with serving(path, recorder):
        proc = run_executable(executable_env(sock=path), b"{}", code=probe)
        timed = run_executable(executable_env(sock=path), b"{}", "-X", "importtime")
    assert proc.returncode == 1
    assert proc.stdout == b'{"cniVersion": "1.0.0", "code": 7, "msg": "m"}\n'
    assert proc.stderr.decode().splitlines() == ["log", "HEAVY="]
    imported = {line.split("|")[-1].strip() for line in timed.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "cni2cnm.daemon.client" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}, sorted(imported)
    assert timed.returncode == 1 and len(recorder.requests) == 2


def test_installed_plugin_forwards_without_site_socket_or_json(sockdir: Path,
                                                              tmp_path: Path) -> None:
    """The file `cni2cnm install` places: a forwarded request imports none of the modules that
    cost start-up time; in-process and CLI runs get site-packages back and work."""
    from cni2cnm.ops.install import wrapper_text

    plugin = tmp_path / "cni2cnm"
    plugin.write_text(wrapper_text())
    plugin.chmod(0o755)
    path = sockdir / "d.sock"
    recorder = Recorder(reply=(0, '{"cniVersion": "1.0.0"}\n', ""))
    conf = b'{"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm"}'
    with serving(path, recorder):
        timed = subprocess.run([sys.executable, "-IS", "-X", "importtime", str(plugin)],
                               input=conf, env=executable_env(sock=path), capture_output=True,
                               timeout=60, check=False)
    assert timed.returncode == 0 and timed.stdout == b'{"cniVersion": "1.0.0"}\n'
    imported = {line.split("|")[-1].strip() for line in timed.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "cni2cnm.daemon.client" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY + LEAN}, sorted(imported)
    # no daemon: in-process, with pydantic from site-packages (an invalid name is code 7)
    bad = subprocess.run([str(plugin)], input=stdin_of(netconf("1.0.0", name="")),
                         env=executable_env(sock=""), capture_output=True, timeout=60)
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 7, bad.stderr
    cli = subprocess.run([str(plugin), "version"], env={"PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and cli.stdout.startswith(f"cni2cnm {__version__}\n")


def test_without_a_daemon_the_plugin_runs_in_process(sockdir: Path) -> None:
    probe = ("import sys\nfrom cni2cnm.entry import run_plugin\nrc = run_plugin()\n"
             "sys.stderr.write('PYDANTIC=%s\\n' % ('pydantic' in sys.modules))\nsys.exit(rc)\n")
    stale = sockdir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))
    proc = run_executable(executable_env(sock=stale), stdin_of(netconf("1.0.0", name="")),
                          code=probe)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 7
    assert f"WARNING cni2cnm.entry: daemon socket {stale} does not accept connections" in err
    assert "PYDANTIC=True" in err


def test_version_never_contacts_the_daemon(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    recorder = Recorder()
    with serving(path, recorder) as server:
        proc = run_executable(executable_env("VERSION", sock=path), b'{"cniVersion": "0.4.0"}')
        assert server.served == 0
    assert proc.returncode == 0 and json.loads(proc.stdout)["cniVersion"] == "0.4.0"
    assert recorder.requests == []


def test_unreadable_stdin_is_reported_as_in_process(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from cni2cnm import entry

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError(5, "Input/output error")

    class Stdin:
        buffer = Broken()

    for k, v in env_for("ADD", **{wire.SOCKET_ENV: "/nonexistent.sock"}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "stdin", Stdin())
    rc = entry.run_plugin()
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["code"] == 5 and "Input/output error" in doc["details"]


# ==== issue 12: the server's limits ===========================================================


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


@pytest.mark.parametrize("env_size, stdin_size", [(wire.MAX_ENV + 1, 10),
                                                  (10, wire.MAX_STDIN + 1)])
def test_requests_over_the_limits_are_not_sent(env_size: int, stdin_size: int) -> None:
    with pytest.raises(wire.WireError, match="exceeds the limits"):
        wire.request({"X": "x" * env_size}, b"x" * stdin_size)
    body = struct_request(env_size, stdin_size)
    with pytest.raises(wire.WireError, match="exceed the limits"):
        wire.parse_request(body)


def struct_request(env_size: int, stdin_size: int) -> bytes:
    blob = b"X=" + b"x" * (env_size - 2)
    return len(blob).to_bytes(4, "big") + blob + b"x" * stdin_size


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


class TwoStepPlugin:
    """Logs, waits for the other request to have logged too, logs again."""

    config_model = PluginConf  # its config has the plugin's keys (logFile)

    def __init__(self, barrier: threading.Barrier, name: str) -> None:
        self.barrier, self.name = barrier, name

    def delete(self, env: Any, conf: Any) -> None:
        import logging

        log = logging.getLogger("cni2cnm.plugin")
        log.warning("%s before", self.name)
        self.barrier.wait()
        log.warning("%s after", self.name)
        self.barrier.wait()


def test_concurrent_requests_log_to_their_own_log_files(tmp_path: Path) -> None:
    barrier = threading.Barrier(2, timeout=20)

    class Two(Runner):
        def plugin(self, env: Any) -> Any:
            return TwoStepPlugin(barrier, env["CNI_CONTAINERID"])

    runner = Two()
    files = {name: tmp_path / f"{name}.log" for name in ("a", "b")}

    def run(name: str) -> None:
        conf = stdin_of(netconf("1.0.0", logFile=str(files[name]), stateDir=str(tmp_path)))
        assert runner(env_for("DEL", CNI_CONTAINERID=name), conf)[0] == 0

    with request_logging():
        threads = [threading.Thread(target=run, args=(n,)) for n in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    for name, path in files.items():
        lines = [ln.split(": ", 1)[1] for ln in path.read_text().splitlines()]
        assert lines == [f"{name} before", f"{name} after"], (name, lines)


# ==== metrics, engine counting, the starter, fallbacks =========================================


def test_metrics_count_requests_fallbacks_and_engine_calls(sockdir: Path) -> None:
    import urllib.request

    from cni2cnm.daemon.metrics import Metrics, MetricsServer

    metrics = Metrics(str(sockdir / client.FALLBACKS))
    client.count_fallback(str(sockdir / "d.sock"), "absent")
    client.count_fallback(str(sockdir / "d.sock"), "no_reply")
    path = sockdir / "d.sock"
    err = '{"cniVersion": "1.0.0", "code": 7, "msg": "m"}\n'
    with serving(path, Recorder(reply=(1, err, "")), observer=metrics):
        client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
    metrics.engine_call("connect", None)
    metrics.engine_call("connect", "Conflict")
    exporter = MetricsServer("127.0.0.1:0", metrics, lambda: True)
    exporter.start()
    try:
        text = urllib.request.urlopen(f"http://{exporter.address}/metrics", timeout=10).read()
        health = urllib.request.urlopen(f"http://{exporter.address}/healthz", timeout=10)
    finally:
        exporter.stop()
    body = text.decode()
    assert 'cni2cnm_requests_total{code="7",command="ADD"} 1.0' in body
    assert 'cni2cnm_request_duration_seconds_count{command="ADD"} 1.0' in body
    assert "cni2cnm_requests_in_flight 0.0" in body
    assert 'cni2cnm_in_process_fallbacks_total{kind="absent"} 1.0' in body
    assert 'cni2cnm_in_process_fallbacks_total{kind="no_reply"} 1.0' in body
    assert 'cni2cnm_engine_calls_total{method="connect"} 2.0' in body
    assert 'cni2cnm_engine_errors_total{kind="Conflict",method="connect"} 1.0' in body
    assert health.status == 200


def test_the_engine_factory_passes_the_pool_and_counts_calls() -> None:
    from cni2cnm import engine as eng
    from cni2cnm.daemon import engines
    from cni2cnm.plugin.config import PluginConf

    calls: list[tuple[str, str | None]] = []

    class Counter:
        def engine_call(self, method: str, error: str | None) -> None:
            calls.append((method, error))

    pool = eng.ClientPool()
    conf = PluginConf.model_validate({"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm",
                                   "dockerTimeout": 7})
    made = engines.pooled(pool, Counter())(conf, {"DOCKER_HOST": UNREACHABLE})
    assert made.pool is pool and made.base_url == UNREACHABLE and made.timeout == 7
    with pytest.raises(eng.EngineUnavailable):
        made.container("x")
    assert calls == [("container", "EngineUnavailable")]
    plain = engines.pooled(pool)(conf, {})
    assert isinstance(plain, eng.Engine) and plain.pool is pool


def test_starter_takes_turns_and_refuses_unsafe_directories(sockdir: Path) -> None:
    import fcntl

    run = sockdir / "run"
    run.mkdir(mode=0o700)
    with open(run / starter.LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert REAL_START(str(run / "d.sock")) == "another process is starting the daemon"
    os.chmod(run, 0o777)
    assert "is not this user's alone" in REAL_START(str(run / "d.sock"))
    assert not (run / "d.sock").exists()


def test_daemon_argv_runs_this_installation_isolated() -> None:
    argv = starter.daemon_argv("/run/x/d.sock", 3, "/run/x")
    assert argv[:3] == [sys.executable, "-I", "-c"]
    assert repr(os.path.dirname(wire.build_id())) in argv[3]
    assert argv[4:] == ["--socket", "/run/x/d.sock", "--started", "on-demand",
                        "--idle-timeout", "600", "--lock-fd", "3",
                        "--log-file", "/run/x/serve.log", "--priority", "0"]


def test_status_reports_the_daemon_for_version_and_doctor(sockdir: Path) -> None:
    from cni2cnm.daemon import status
    from cni2cnm.ops.doctor import check_daemon

    path = sockdir / "d.sock"
    absent = status.probe(str(path))
    assert not absent.running and absent.note == "no socket"
    assert check_daemon(str(path)).status == "OK"  # the plugin starts one when needed
    with serving(path, Recorder(), started=wire.ON_DEMAND, metrics_address="127.0.0.1:1"):
        st = status.probe(str(path))
        check = check_daemon(str(path))
    assert st.running and st.current and st.pid == os.getpid()
    assert (st.started, st.metrics, st.version) == (wire.ON_DEMAND, "127.0.0.1:1", __version__)
    assert "started on-demand" in st.describe()
    # the metrics address it names does not answer: a warning, never a failure
    assert check.status == "WARN" and "/healthz does not answer" in check.message
    assert status.stop_on_demand(str(path), stale_only=True) is None  # current: kept


@pytest.mark.parametrize("path", ["\ud800", "/run/c2c\0x"])
def test_an_unusable_socket_path_runs_in_process_without_a_traceback(path: str) -> None:
    data = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm",
                       "daemonSocket": path}).encode()
    started: list[str] = []
    outcome = client.forward(env_for("ADD"), data, start=lambda p, r: started.append(p) or "")
    assert isinstance(outcome, client.Fallback) and "unusable" in outcome.reason
    assert started == []
