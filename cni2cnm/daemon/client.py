"""The executable's side of the daemon: forward one request, or say why not. Stdlib only.

`forward` returns the daemon's Reply, to be printed verbatim, or a Fallback: the reason the
request must run in-process instead. A missing daemon is not an error (info); a socket that
refuses, a daemon that does not greet within HELLO_TIMEOUT, that is not root's or that runs
another version of cni2cnm are warnings. None of these has started the request.

In the daemon mode "auto" (the default; wire.py lists the three), with no daemon answering on
the socket, the executable starts one (starter.py) and runs this request in-process without
waiting for it; the next requests go to it. A daemon of another version or installation that
the executable started on demand is stopped (SIGTERM to the pid its socket's SO_PEERCRED
names) and replaced the same way; one started by hand or by systemd is only bypassed, with a
warning. In "manual" the executable uses a daemon that answers and never starts or stops one;
in "off" it never uses one.

Once the request is sent the daemon runs it. If the daemon then dies, or does not reply
within the reply timeout, the request runs again in-process: DEL, CHECK, GC and STATUS are
idempotent, and an ADD the daemon left half-done is finished first from the store's intent
record (an ADD that completed in the daemon is then reported as existing, code 101: the
runtime DELs and retries, nothing leaks).

Every fallback where a daemon should have answered is counted: one line (its kind) appended
to FALLBACKS in the socket's directory, which the daemon's metrics read.
"""

from __future__ import annotations

# _socket is the C module under `socket`: socket.py builds its enums at import, ~10 ms of
# every pod's start-up. _socket.socket has everything used here (it is socket.socket's base).
import _socket
import os
import struct

from cni2cnm import __version__
from cni2cnm.daemon import wire
from cni2cnm.testhook import STOP_AT_ENV

TYPE_CHECKING = False  # typing and collections.abc would cost the executable ~9 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from cni2cnm.plugin.config import DaemonMode

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
    """Run in-process instead, because of `reason`; `warn`: log it as a warning, else info.
    `kind`: a short name for the metrics, "" when no daemon was meant to answer."""

    __slots__ = ("kind", "reason", "warn")

    def __init__(self, reason: str, warn: bool = True, kind: str = "") -> None:
        self.reason = reason
        self.warn = warn
        self.kind = kind


FALLBACKS = "fallbacks"  # in the socket's directory: one line per in-process fallback
FALLBACKS_MAX = 1 << 20  # bytes: beyond this (no daemon with metrics reads it) stop counting


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


def daemon_mode(environ: Mapping[str, str], data: bytes) -> DaemonMode:
    """CNI2CNM_DAEMON, else the config's `daemon` key, else wire.MODE_AUTO. A value the config
    model rejects counts as wire.MODE_MANUAL here: the daemon, or the in-process run, reports
    it."""
    mode = environ.get(wire.MODE_ENV) or wire.config_value(data, wire.MODE_KEY) or wire.MODE_AUTO
    for known in (wire.MODE_AUTO, wire.MODE_OFF):
        if mode == known:
            return known
    return wire.MODE_MANUAL


def reply_timeout(data: bytes) -> float:
    t = wire.config_value(data, "dockerTimeout")
    if isinstance(t, int | float) and not isinstance(t, bool) and 0 < t <= 600:
        return max(MIN_REPLY_TIMEOUT, 3.0 * t)
    return MIN_REPLY_TIMEOUT


def forward(environ: Mapping[str, str], data: bytes, *, connect_timeout: float = CONNECT_TIMEOUT,
            hello_timeout: float = HELLO_TIMEOUT, reply_timeout_s: float | None = None,
            start: Callable[[str, bool], str] | None = None) -> Reply | Fallback:
    """Run the request (this environment, `data` as stdin) in the daemon, if there is one.
    `start(path, replacing)` starts a daemon on demand (starter.start), says what it did."""
    if STOP_AT_ENV in environ:
        return Fallback(f"{STOP_AT_ENV} is set: running in-process, so that the test "
                        "point stops this process and not the daemon", warn=False)
    path = socket_path(environ, data)
    if path is None:
        return Fallback("daemon disabled (empty socket path): running in-process", warn=False)
    if not _usable_path(path):
        return Fallback(f"daemon socket path {path!r} is unusable (NUL or undecodable "
                        "characters): running in-process", warn=True)
    mode = daemon_mode(environ, data)
    if mode == wire.MODE_OFF:
        return Fallback(f"daemon off (daemon: \"{mode}\"): running in-process", warn=False)
    outcome = _converse(path, environ, data, connect_timeout, hello_timeout, reply_timeout_s,
                        replace=mode == wire.MODE_AUTO)
    if isinstance(outcome, Fallback) and outcome.kind:
        if mode == wire.MODE_AUTO and outcome.kind in ("absent", "refused", "replace"):
            if start is None:
                from cni2cnm.daemon import starter

                start = starter.start
            outcome.reason += f"; {start(path, outcome.kind == 'replace')}"
        count_fallback(path, outcome.kind)
    return outcome


def _usable_path(path: str) -> bool:
    if "\0" in path:
        return False
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


def _converse(path: str, environ: Mapping[str, str], data: bytes, connect_timeout: float,
              hello_timeout: float, reply_timeout_s: float | None,
              replace: bool) -> Reply | Fallback:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
        except FileNotFoundError:
            return Fallback(f"no daemon socket at {path}: running in-process", warn=False,
                            kind="absent")
        except ConnectionRefusedError as e:
            return Fallback(f"daemon socket {path} does not accept connections "
                            f"({_why(e)}): running in-process", kind="refused")
        except OSError as e:
            return Fallback(f"daemon socket {path} does not accept connections "
                            f"({_why(e)}): running in-process", kind="unusable")
        peer_pid, uid = _peer_credentials(sock)
        if uid not in (0, os.geteuid()):
            return Fallback(f"daemon socket {path} belongs to a process of uid {uid}, not "
                            "root: not using it, running in-process", kind="foreign")
        try:
            sock.settimeout(hello_timeout)
            hello = wire.parse_hello(wire.recv(sock))
        except (OSError, wire.WireError) as e:
            return Fallback(f"daemon at {path} did not answer within {hello_timeout:g} s "
                            f"({_why(e)}): running in-process", kind="no_hello")
        if (hello.protocol != wire.PROTOCOL or hello.version != __version__
                or hello.build != wire.build_id()):
            return _other_version(path, hello, peer_pid, replace)
        try:
            sock.settimeout(reply_timeout_s or reply_timeout(data))
            wire.send(sock, wire.request(wire.forwarded_env(environ), data))
        except (OSError, wire.WireError) as e:
            # The daemon runs a request only once it has all of it: nothing was started. A
            # daemon that refuses this user replies without reading the request: read that.
            refusal = _early_reply(sock)
            return refusal or Fallback(f"cannot send the request to the daemon at {path} "
                                       f"({_why(e)}): running in-process", kind="send")
        try:
            status, out, err = wire.parse_reply(wire.recv(sock))
        except (OSError, wire.WireError) as e:
            return Fallback(f"the daemon at {path} (pid {hello.pid}) accepted the request but "
                            f"did not reply ({_why(e)}): running it again in-process",
                            kind="no_reply")
    finally:
        sock.close()
    return Reply(status, out, err)


def _other_version(path: str, hello: wire.Hello, peer_pid: int, replace: bool) -> Fallback:
    theirs = (f"runs cni2cnm {hello.version} (protocol {hello.protocol})" if hello.protocol
              else "speaks another protocol (an older cni2cnm)")
    if hello.build and hello.version == __version__ and hello.protocol == wire.PROTOCOL:
        theirs = f"runs another installation of cni2cnm {hello.version} ({hello.build})"
    mine = f"this executable is {__version__} (protocol {wire.PROTOCOL}, {wire.build_id()})"
    if (replace and hello.started == wire.ON_DEMAND and hello.pid == str(peer_pid)
            and peer_pid > 1):
        try:
            os.kill(peer_pid, 15)  # SIGTERM (the signal module is not imported here)
        except OSError as e:
            return Fallback(f"daemon at {path} {theirs}, {mine}; cannot stop it "
                            f"({_why(e)}): running in-process", kind="version")
        return Fallback(f"daemon at {path} {theirs}, {mine}: stopped it (pid {peer_pid}); "
                        "running in-process", kind="replace")
    return Fallback(f"daemon at {path} {theirs}, {mine}: restart the daemon; running "
                    "in-process", kind="version")


def _early_reply(sock: Any) -> Reply | None:
    try:
        sock.settimeout(1.0)
        status, out, err = wire.parse_reply(wire.recv(sock))
    except (OSError, wire.WireError):
        return None
    return Reply(status, out, err)


def count_fallback(path: str, kind: str) -> None:
    """One line in the socket directory's FALLBACKS file, when that directory exists and is
    root's (never created here: the daemon creates it)."""
    directory = os.path.dirname(path) or "."
    try:
        st = os.stat(directory)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return
        from cni2cnm.cni.logs import open_append  # a fallback imports it anyway

        fd = open_append(os.path.join(directory, FALLBACKS))
    except OSError:
        return
    try:
        if os.fstat(fd).st_size < FALLBACKS_MAX:  # the daemon's metrics empty it when read
            os.write(fd, kind.encode() + b"\n")
    except OSError:
        pass
    finally:
        os.close(fd)


def _peer_credentials(sock: Any) -> tuple[int, int]:
    """(pid, uid) of the process that made the daemon's socket listen."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
