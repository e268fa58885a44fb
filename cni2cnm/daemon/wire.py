"""The daemon's wire format, shared by the executable and `cni2cnm serve`. Standard library only.

One connection carries one request:

    executable                          daemon
    connect  ------------------------>  accept; read the peer's uid (SO_PEERCRED)
             <------------------------  HELLO    "cni2cnm" NUL protocol NUL version NUL pid
                                                 NUL build NUL started NUL metrics
    REQUEST  ------------------------>  u32 n, n bytes of NUL-separated NAME=value, then stdin
             <------------------------  REPLY    u8 exit, u32 n, n bytes of stdout, then stderr

Every message is a frame: a 4-byte big-endian length, then that many bytes. The format is
binary rather than JSON so that the executable's forwarding path imports neither json nor re
(~8 ms of every pod's start-up): it reads the config only when a key it needs can be in it
(`config_value`). The executable sends its request only after the hello, so a daemon that is
hung or overloaded never starts a request the executable gave up on: until the request is
sent, running in-process instead is always safe. The reply is exactly what skel.dispatch wrote
to stdout, its exit status, and what the request logged to stderr.

The hello's `build` names the installation the daemon runs (its package directory): a daemon
of the same version number but another installation (another venv, an editable checkout) is
another version too. `started` says how the daemon was started (ON_DEMAND, SYSTEMD, or MANUAL:
by hand): only a daemon the plugin started on demand is ever replaced by the plugin. `metrics`
is the daemon's --metrics-address, or empty.

The executable's daemon mode (the config's `daemon` key, CNI2CNM_DAEMON) is one of MODE_AUTO,
MODE_MANUAL and MODE_OFF.

Limits: a request's environment is at most MAX_ENV bytes and its stdin MAX_STDIN; a bigger
request is not sent (it runs in-process). No frame is longer than MAX_FRAME.
"""

from __future__ import annotations

import struct

from cni2cnm.testhook import STOP_AT_ENV

TYPE_CHECKING = False  # typing and collections.abc would cost the executable ~9 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from cni2cnm.plugin.config import DaemonMode

PROTOCOL = 3
MAGIC = b"cni2cnm"
DEFAULT_SOCKET = "/run/cni2cnm/cni2cnm.sock"
SOCKET_ENV = "CNI2CNM_DAEMON_SOCKET"  # overrides the config's key; empty: no daemon
SOCKET_KEY = "daemonSocket"  # config key; empty: no daemon
MODE_ENV = "CNI2CNM_DAEMON"  # overrides the config's key
MODE_KEY = "daemon"  # config key: one of the modes below (the config model's DaemonMode)
# The daemon modes: how the executable uses a daemon. The config model's DaemonMode lists
# them (the type checker holds these names to it); the executable reads a value it rejects
# as MODE_MANUAL and lets the daemon, or the in-process run, report it.
MODE_AUTO: DaemonMode = "auto"  # the default: use the daemon, start one on demand
MODE_MANUAL: DaemonMode = "manual"  # use a daemon that runs, never start one
MODE_OFF: DaemonMode = "off"  # never use a daemon
MAX_ENV = 64 << 10
MAX_STDIN = 1 << 20
MAX_FRAME = 2 << 20  # a request is at most 4 + MAX_ENV + MAX_STDIN bytes; replies are cut

# How a daemon was started, as its hello says (not to be confused with the modes above).
ON_DEMAND = "on-demand"
SYSTEMD = "systemd"
MANUAL = "manual"

# VERSION is answered in-process: it needs no Docker and must stay cheap.
FORWARDED_COMMANDS = frozenset({"ADD", "DEL", "CHECK", "GC", "STATUS"})
# Variables that concern the executable's own process, never forwarded: the test stop point
# SIGSTOPs the process that runs the plugin, which must not be the daemon.
LOCAL_ONLY_ENV = frozenset({STOP_AT_ENV, SOCKET_ENV, MODE_ENV})

_HEADER = struct.Struct(">I")
_REPLY = struct.Struct(">BI")


class WireError(Exception):
    """The peer closed the connection early or sent something that is not a valid frame."""


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What the plugin reads from its environment: CNI_*, CNI2CNM_*, DOCKER_HOST."""
    return {
        k: v for k, v in environ.items()
        if (k.startswith(("CNI_", "CNI2CNM_")) or k == "DOCKER_HOST") and k not in LOCAL_ONLY_ENV
    }


# ---- frames ---------------------------------------------------------------------------------


def send(sock: Any, body: bytes) -> None:
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    sock.sendall(_HEADER.pack(len(body)) + body)


def recv(sock: Any, deadline: float | None = None, limit: int = MAX_FRAME) -> bytes:
    """One frame. `deadline` (time.monotonic()) bounds the whole frame, not each recv: a peer
    that sends a byte at a time cannot hold the connection longer."""
    (size,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size, deadline))
    if size > limit:
        raise WireError(f"frame of {size} bytes exceeds the {limit}-byte limit")
    return _recv_exactly(sock, size, deadline)


def _recv_exactly(sock: Any, size: int, deadline: float | None = None) -> bytes:
    chunks = []
    left = size
    while left:
        if deadline is not None:
            from time import monotonic

            remaining = deadline - monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            got = size - left
            raise WireError("connection closed" + (f" after {got} of {size} bytes" if got else ""))
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---- the config, read as little as possible ---------------------------------------------------


def peek_config(data: bytes) -> dict[str, Any]:
    """The network config on stdin, read only as far as the json module goes ({} if not)."""
    import json

    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def config_value(data: bytes, key: str) -> Any:
    """The top-level `key` of the config, or None. Parses the JSON only when the key's name
    occurs in it, or could (a \\u escape can spell any name)."""
    if key.encode() not in data and b"\\u" not in data:
        return None
    return peek_config(data).get(key)


# ---- messages -------------------------------------------------------------------------------


class Hello:
    """What a daemon says first. protocol 0: a greeting this cannot read (protocol 1 greeted
    with JSON); a daemon of protocol 2 says only protocol, version and pid."""

    __slots__ = ("build", "metrics", "pid", "protocol", "started", "version")

    def __init__(self, protocol: int, version: str = "?", pid: str = "?", build: str = "",
                 started: str = "", metrics: str = "") -> None:
        self.protocol = protocol
        self.version = version
        self.pid = pid
        self.build = build
        self.started = started
        self.metrics = metrics


def hello(version: str, pid: int, build: str = "", started: str = MANUAL,
          metrics: str = "") -> bytes:
    return b"\0".join((MAGIC, str(PROTOCOL).encode(), version.encode(), str(pid).encode(),
                       build.encode(errors="surrogateescape"), started.encode(),
                       metrics.encode()))


def parse_hello(body: bytes) -> Hello:
    parts = [p.decode(errors="replace") for p in body.split(b"\0")]
    if len(parts) < 4 or parts[0] != "cni2cnm" or not parts[1].isdigit():
        return Hello(0)
    return Hello(int(parts[1]), *parts[2:7])


def build_id() -> str:
    """This installation: the directory its cni2cnm package was imported from."""
    import cni2cnm

    return cni2cnm.__path__[0]


def request(env: Mapping[str, str], stdin: bytes) -> bytes:
    blob = b"\0".join(f"{k}={v}".encode(errors="surrogateescape") for k, v in env.items())
    if len(blob) > MAX_ENV or len(stdin) > MAX_STDIN:
        raise WireError(f"request of {len(blob)} bytes of environment and {len(stdin)} of "
                        f"stdin exceeds the limits ({MAX_ENV}, {MAX_STDIN})")
    return _HEADER.pack(len(blob)) + blob + stdin


def parse_request(body: bytes) -> tuple[dict[str, str], bytes]:
    if len(body) < _HEADER.size:
        raise WireError("request: too short")
    (size,) = _HEADER.unpack_from(body)
    if _HEADER.size + size > len(body):
        raise WireError(f"request: environment of {size} bytes overruns the message")
    blob, stdin = body[_HEADER.size:_HEADER.size + size], body[_HEADER.size + size:]
    if size > MAX_ENV or len(stdin) > MAX_STDIN:
        raise WireError(f"request: {size} bytes of environment and {len(stdin)} of stdin "
                        f"exceed the limits ({MAX_ENV}, {MAX_STDIN})")
    env: dict[str, str] = {}
    for item in blob.split(b"\0") if blob else ():
        name, eq, value = item.partition(b"=")
        if not eq or not name:
            raise WireError(f"request: environment entry {item[:40]!r} is not NAME=value")
        env[name.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return env, stdin


def reply(exit_status: int, stdout: str, stderr: str) -> bytes:
    if not 0 <= exit_status <= 255:
        raise WireError(f"reply: exit must be 0-255, got {exit_status}")
    out = stdout.encode(errors="surrogateescape")
    err = stderr.encode(errors="surrogateescape")
    room = MAX_FRAME - _REPLY.size - len(out)
    if room < 0:
        raise WireError(f"reply: stdout of {len(out)} bytes exceeds the {MAX_FRAME}-byte limit")
    if len(err) > room:
        cut = b"\n[cni2cnm: log cut to fit the reply]\n"
        err = err[:max(0, room - len(cut))] + cut
    return _REPLY.pack(exit_status, len(out)) + out + err[:room]


def parse_reply(body: bytes) -> tuple[int, str, str]:
    if len(body) < _REPLY.size:
        raise WireError("reply: too short")
    status, size = _REPLY.unpack_from(body)
    if _REPLY.size + size > len(body):
        raise WireError(f"reply: stdout of {size} bytes overruns the message")
    out = body[_REPLY.size:_REPLY.size + size].decode(errors="replace")
    return status, out, body[_REPLY.size + size:].decode(errors="replace")
