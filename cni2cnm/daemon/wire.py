"""The daemon's wire format, shared by the executable and `cni2cnm serve`. Standard library only.

One connection carries one request:

    executable                          daemon
    connect  ------------------------>  accept; read the peer's uid (SO_PEERCRED)
             <------------------------  HELLO    {"protocol": 1, "version": "0.1.0", "pid": N}
    REQUEST  ------------------------>  {"env": {"CNI_COMMAND": ...}, "stdin": "<base64>"}
             <------------------------  REPLY    {"exit": 0, "stdout": "...", "stderr": "..."}

Every message is a frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (an
object). The executable sends its request only after the hello, so a daemon that is hung or
overloaded never starts a request the executable gave up on: until the request is sent,
running in-process instead is always safe. The reply is exactly what skel.dispatch wrote to
stdout, its exit status, and what the request logged to stderr.
"""

from __future__ import annotations

import binascii
import json
import socket
import struct

TYPE_CHECKING = False  # typing and collections.abc would cost the executable ~9 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

PROTOCOL = 1
DEFAULT_SOCKET = "/run/cni2cnm/cni2cnm.sock"
SOCKET_ENV = "CNI2CNM_DAEMON_SOCKET"  # overrides the config's key; empty: no daemon
SOCKET_KEY = "daemonSocket"  # config key; empty: no daemon
MAX_FRAME = 16 << 20

# VERSION is answered in-process: it needs no Docker and must stay cheap.
FORWARDED_COMMANDS = frozenset({"ADD", "DEL", "CHECK", "GC", "STATUS"})
# Variables that concern the executable's own process, never forwarded: the test stop point
# SIGSTOPs the process that runs the plugin, which must not be the daemon.
LOCAL_ONLY_ENV = frozenset({"CNI2CNM_TEST_STOP_AT", SOCKET_ENV})

_HEADER = struct.Struct(">I")


class WireError(Exception):
    """The peer closed the connection early or sent something that is not a valid frame."""


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What the plugin reads from its environment: CNI_*, CNI2CNM_*, DOCKER_HOST."""
    return {
        k: v for k, v in environ.items()
        if (k.startswith(("CNI_", "CNI2CNM_")) or k == "DOCKER_HOST") and k not in LOCAL_ONLY_ENV
    }


# ---- frames ---------------------------------------------------------------------------------


def send(sock: socket.socket, doc: dict[str, Any]) -> None:
    body = json.dumps(doc, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    sock.sendall(_HEADER.pack(len(body)) + body)


def recv(sock: socket.socket) -> dict[str, Any]:
    (size,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
    if size > MAX_FRAME:
        raise WireError(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        doc = json.loads(_recv_exactly(sock, size))
    except (ValueError, RecursionError) as e:
        raise WireError(f"frame is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise WireError(f"frame is a JSON {type(doc).__name__}, not an object")
    return doc


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    left = size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            got = size - left
            raise WireError("connection closed" + (f" after {got} of {size} bytes" if got else ""))
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---- messages -------------------------------------------------------------------------------


def peek_config(data: bytes) -> dict[str, Any]:
    """The network config on stdin, read only as far as the json module goes ({} if not)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def hello(version: str, pid: int) -> dict[str, Any]:
    return {"protocol": PROTOCOL, "version": version, "pid": pid}


def request(env: Mapping[str, str], stdin: bytes) -> dict[str, Any]:
    return {"env": dict(env), "stdin": binascii.b2a_base64(stdin, newline=False).decode("ascii")}


def parse_request(doc: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    env, data = doc.get("env"), doc.get("stdin")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise WireError("request: env must be an object of strings")
    if not isinstance(data, str):
        raise WireError("request: stdin must be a base64 string")
    try:
        return env, binascii.a2b_base64(data.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as e:
        raise WireError(f"request: stdin is not base64: {e}") from None


def reply(exit_status: int, stdout: str, stderr: str) -> dict[str, Any]:
    return {"exit": exit_status, "stdout": stdout, "stderr": stderr}


def parse_reply(doc: dict[str, Any]) -> tuple[int, str, str]:
    status, out, err = doc.get("exit"), doc.get("stdout"), doc.get("stderr", "")
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 255:
        raise WireError(f"reply: exit must be an integer 0-255, got {status!r}")
    if not isinstance(out, str) or not isinstance(err, str):
        raise WireError("reply: stdout and stderr must be strings")
    return status, out, err
