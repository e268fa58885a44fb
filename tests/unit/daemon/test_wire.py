"""cni2cnm.daemon.wire: frames, requests, replies and hellos, their limits, and what the
client reads from a config without parsing it."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from cni2cnm.daemon import wire


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

