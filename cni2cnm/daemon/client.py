"""The executable's side of the daemon: forward one request, or say why not. Stdlib only.

`forward` returns the daemon's Reply, to be printed verbatim, or a Fallback: the reason the
request must run in-process instead. A missing daemon is not an error (info); a socket that
refuses, a daemon that does not greet within HELLO_TIMEOUT, that is not root's or that runs
another version of cni2cnm are warnings. None of these has started the request.

Once the request is sent the daemon runs it. If the daemon then dies, or does not reply
within the reply timeout, the request runs again in-process: DEL, CHECK, GC and STATUS are
idempotent, and an ADD the daemon left half-done is finished first from the store's intent
record (an ADD that completed in the daemon is then reported as existing, code 101: the
runtime DELs and retries, nothing leaks).
"""

from __future__ import annotations

# _socket is the C module under `socket`: socket.py builds its enums at import, ~10 ms of
# every pod's start-up. _socket.socket has everything used here (it is socket.socket's base).
import _socket
import os
import struct

from cni2cnm import __version__
from cni2cnm.daemon import wire

TYPE_CHECKING = False  # typing and collections.abc would cost the executable ~9 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

CONNECT_TIMEOUT = 1.0  # seconds to connect to the socket
HELLO_TIMEOUT = 2.0  # seconds for the daemon's hello after connecting
MIN_REPLY_TIMEOUT = 150.0  # seconds for the reply; 3 x the config's dockerTimeout if larger


class Reply:
    """The daemon's answer: print stdout and stderr as they are, exit with `exit`."""

    __slots__ = ("exit", "stderr", "stdout")

    def __init__(self, exit_status: int, stdout: str, stderr: str) -> None:
        self.exit = exit_status
        self.stdout = stdout
        self.stderr = stderr


class Fallback:
    """Run in-process instead, because of `reason`; `warn`: log it as a warning, else info."""

    __slots__ = ("reason", "warn")

    def __init__(self, reason: str, warn: bool = True) -> None:
        self.reason = reason
        self.warn = warn


def forwarded(environ: Mapping[str, str]) -> bool:
    """Would this invocation go to a daemon at all? (VERSION and bad commands never do.)"""
    return environ.get("CNI_COMMAND", "") in wire.FORWARDED_COMMANDS


def socket_path(environ: Mapping[str, str], data: bytes) -> str | None:
    """CNI2CNM_DAEMON_SOCKET, else the config's daemonSocket, else the default; None (an empty
    value) means no daemon."""
    if wire.SOCKET_ENV in environ:
        return environ[wire.SOCKET_ENV] or None
    configured = wire.config_value(data, wire.SOCKET_KEY)
    if isinstance(configured, str):
        return configured or None
    return wire.DEFAULT_SOCKET


def reply_timeout(data: bytes) -> float:
    t = wire.config_value(data, "dockerTimeout")
    if isinstance(t, int | float) and not isinstance(t, bool) and 0 < t <= 600:
        return max(MIN_REPLY_TIMEOUT, 3.0 * t)
    return MIN_REPLY_TIMEOUT


def forward(environ: Mapping[str, str], data: bytes, *, connect_timeout: float = CONNECT_TIMEOUT,
            hello_timeout: float = HELLO_TIMEOUT,
            reply_timeout_s: float | None = None) -> Reply | Fallback:
    """Run the request (this environment, `data` as stdin) in the daemon, if there is one."""
    if "CNI2CNM_TEST_STOP_AT" in environ:
        return Fallback("CNI2CNM_TEST_STOP_AT is set: running in-process, so that the test "
                        "point stops this process and not the daemon", warn=False)
    path = socket_path(environ, data)
    if path is None:
        return Fallback("daemon disabled (empty socket path): running in-process", warn=False)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
        except FileNotFoundError:
            return Fallback(f"no daemon socket at {path}: running in-process", warn=False)
        except OSError as e:
            return Fallback(f"daemon socket {path} does not accept connections "
                            f"({_why(e)}): running in-process")
        uid = _peer_uid(sock)
        if uid not in (0, os.geteuid()):
            return Fallback(f"daemon socket {path} belongs to a process of uid {uid}, not "
                            "root: not using it, running in-process")
        try:
            sock.settimeout(hello_timeout)
            protocol, version, pid = wire.parse_hello(wire.recv(sock))
        except (OSError, wire.WireError) as e:
            return Fallback(f"daemon at {path} did not answer within {hello_timeout:g} s "
                            f"({_why(e)}): running in-process")
        if protocol != wire.PROTOCOL or version != __version__:
            theirs = (f"runs cni2cnm {version} (protocol {protocol})" if protocol
                      else "speaks another protocol (an older cni2cnm)")
            return Fallback(f"daemon at {path} {theirs}, this executable is {__version__} "
                            f"(protocol {wire.PROTOCOL}): restart the daemon; running in-process")
        try:
            sock.settimeout(reply_timeout_s or reply_timeout(data))
            wire.send(sock, wire.request(wire.forwarded_env(environ), data))
        except (OSError, wire.WireError) as e:
            # The daemon runs a request only once it has all of it: nothing was started.
            return Fallback(f"cannot send the request to the daemon at {path} ({_why(e)}): "
                            "running in-process")
        try:
            status, out, err = wire.parse_reply(wire.recv(sock))
        except (OSError, wire.WireError) as e:
            return Fallback(f"the daemon at {path} (pid {pid}) accepted the request but did "
                            f"not reply ({_why(e)}): running it again in-process")
    finally:
        sock.close()
    return Reply(status, out, err)


def _peer_uid(sock: Any) -> int:
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
