"""`cni2cnm serve`: plugin requests over a unix socket, in a process that stays warm.

Each connection gets a thread that runs exactly what the executable runs in-process,
``skel.dispatch(load_plugin, environ, stdin, stdout)``, with the request's environment and
stdin, and sends back what dispatch wrote to stdout, its exit status and what the request
logged to stderr (see wire.py). Requests for different containers run concurrently; the
store's per-container file locks serialise requests for the same container, across threads
and across processes alike.

Only root may use the daemon: the socket is 0600 in a directory that is not writable by
others, and every peer's uid is read with SO_PEERCRED; anyone else gets a CNI error.

SIGTERM (or SIGINT): the socket is removed at once (new invocations run in-process), requests
in flight finish and are answered, then the process exits 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cni2cnm import __version__
from cni2cnm.daemon import wire

log = logging.getLogger("cni2cnm-serve")  # not under "cni2cnm": requests reconfigure that one

Handler = Callable[[dict[str, str], bytes], tuple[int, str, str]]

MAX_INFLIGHT = 128  # more connections than this at once are closed: they run in-process
REQUEST_TIMEOUT = 30.0  # seconds a peer may take to send its request, or to take the reply
ALLOWED_UIDS = frozenset({0})
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class DaemonError(Exception):
    """The daemon cannot start (socket path unusable, another daemon serving)."""


# ==== one request ============================================================================

_local = threading.local()


def run_request(env: dict[str, str], data: bytes) -> tuple[int, str, str]:
    """What the executable does in-process, here: (exit status, stdout, stderr)."""
    from cni2cnm.cni import skel
    from cni2cnm.entry import load_plugin, log_as_configured

    out, err = io.StringIO(), io.StringIO()
    _local.stream, _local.level = err, _request_level(env, data)
    try:
        status = skel.dispatch(lambda: load_plugin(env), env, io.BytesIO(data), out,
                               on_config=log_as_configured)
    finally:
        _local.stream = _local.level = None
    return status, out.getvalue(), err.getvalue()


def rejected(uid: int, pid: int, data: bytes, path: str) -> tuple[int, str, str]:
    """The CNI error a peer that is not root gets, in its config's version when supported."""
    from cni2cnm.cni import version as cniversion
    from cni2cnm.cni.errors import CNIError, Code

    v = wire.peek_config(data).get("cniVersion")
    v = v if isinstance(v, str) and v in cniversion.SUPPORTED_VERSIONS else cniversion.LATEST
    err = CNIError(Code.IO_FAILURE, "permission denied",
                   f"the cni2cnm daemon on {path} serves root (uid 0) only; this plugin runs "
                   f"as uid {uid} (pid {pid})")
    return 1, json.dumps(err.to_dict(v)) + "\n", ""


# ---- logging per request ---------------------------------------------------------------------
# cni.logs.setup() configures the process-wide "cni2cnm" logger for one request: its level
# from CNI2CNM_LOG_LEVEL or the config, its output stderr or the config's logFile. Here many
# requests share the process, so (1) sys.stderr (and sys.stdout, as in-process) is a stream
# that writes to the current request's buffer, which goes back to the executable's stderr;
# (2) the logger's own level is held at debug (CNI2CNM_LOG_LEVEL=debug in this process's
# environment, which setup() obeys) and every handler setup() adds gets a filter that applies
# the current request's level: the request's CNI2CNM_LOG_LEVEL, else the daemon's, else the
# config's logLevel, else warning. Requests with different logFiles at the same moment may
# write to each other's file.


class _RoutedStream(io.TextIOBase):
    """sys.stderr in the daemon: the current request's buffer, else the real stream."""

    def __init__(self, real: Any) -> None:
        super().__init__()
        self.real = real

    def _target(self) -> Any:
        return getattr(_local, "stream", None) or self.real

    def write(self, s: str) -> int:
        return self._target().write(s)

    def flush(self) -> None:
        self._target().flush()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return int(self.real.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.real, "encoding", "utf-8"))


class _RequestLevel(logging.Filter):
    def __init__(self, default: int) -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        level = getattr(_local, "level", None)
        return record.levelno >= (self.default if level is None else level)


class _FilteredHandlers(list):  # type: ignore[type-arg]
    """The "cni2cnm" logger's handler list in the daemon: whatever handler logs.setup() adds
    (Logger.addHandler appends here) gets the request-level filter."""

    def __init__(self, handlers: list[logging.Handler], level_filter: logging.Filter) -> None:
        super().__init__()
        self.level_filter = level_filter
        for h in handlers:
            self.append(h)

    def append(self, handler: logging.Handler) -> None:
        handler.addFilter(self.level_filter)
        super().append(handler)


_daemon_level: str | None = None  # CNI2CNM_LOG_LEVEL as the daemon was started


def _request_level(env: Mapping[str, str], data: bytes) -> int:
    for name in (env.get("CNI2CNM_LOG_LEVEL"), _daemon_level):
        if name and name.lower() in _LEVELS:
            return _LEVELS[name.lower()]
    name = wire.peek_config(data).get("logLevel")
    return _LEVELS.get(name, logging.WARNING) if isinstance(name, str) else logging.WARNING


@contextlib.contextmanager
def request_logging() -> Iterator[None]:
    """Route stderr/stdout and log levels per request thread (see above), until exit."""
    global _daemon_level
    from cni2cnm.cni import logs

    saved = sys.stdout, sys.stderr, os.environ.get("CNI2CNM_LOG_LEVEL")
    _daemon_level = saved[2]
    routed = _RoutedStream(sys.stderr)
    level_filter = _RequestLevel(_LEVELS.get((saved[2] or "").lower(), logging.WARNING))
    logger = logging.getLogger(logs.LOGGER_NAME)
    sys.stdout = sys.stderr = routed
    os.environ["CNI2CNM_LOG_LEVEL"] = "debug"
    logger.handlers = _FilteredHandlers(logger.handlers, level_filter)
    logs.setup()
    try:
        yield
    finally:
        logger.handlers = list(logger.handlers)
        for h in logger.handlers:
            h.removeFilter(level_filter)
        sys.stdout, sys.stderr = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("CNI2CNM_LOG_LEVEL", None)
        else:
            os.environ["CNI2CNM_LOG_LEVEL"] = saved[2]
        logs.setup()


# ==== the server =============================================================================


class Server:
    """Accepts connections on a unix socket; a thread per connection runs `handler`."""

    def __init__(self, path: str, handler: Handler = run_request, *,
                 allowed_uids: frozenset[int] = ALLOWED_UIDS, max_inflight: int = MAX_INFLIGHT,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.path = os.path.abspath(path)
        self.handler = handler
        self.allowed_uids = allowed_uids
        self.max_inflight = max_inflight
        self.request_timeout = request_timeout
        self.pid = os.getpid()
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self.served = 0
        self.stop_reason = ""

    # ---- binding ------------------------------------------------------------------------

    def bind(self) -> None:
        """Create the socket: owner this process (root), mode 0600, in a directory that only
        its owner can write (created 0700 when missing)."""
        _prepare_directory(os.path.dirname(self.path))
        _remove_stale_socket(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            listener.bind(self.path)
        except OSError as e:
            listener.close()
            raise DaemonError(f"cannot bind {self.path}: {e.strerror or e}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        listener.listen(socket.SOMAXCONN)
        listener.setblocking(False)
        self._listener = listener

    # ---- serving ------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept until stop(); then remove the socket and wait for requests in flight."""
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._listener and not self._stopping.is_set():
                        self._accept()
        self._close_listener()
        with self._lock:
            pending = list(self._workers)
        log.info("stopping%s: socket removed, %d request(s) in flight",
                 f" ({self.stop_reason})" if self.stop_reason else "", len(pending))
        for t in pending:
            t.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def stop(self, reason: str = "") -> None:
        """Stop accepting. Safe from a signal handler (takes no lock) and from any thread;
        only the first call does anything."""
        if self._stopping.is_set():
            return
        self.stop_reason = reason
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")  # before the flag: the loop closes the pipe after it
        self._stopping.set()

    @property
    def inflight(self) -> int:
        return len(self._workers)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as e:  # EMFILE, ENFILE, ENOBUFS...: the client runs in-process
            log.error("cannot accept a connection: %s", e)
            time.sleep(0.05)  # the connection stays queued: do not spin on it
            return
        with self._lock:
            busy = len(self._workers) >= self.max_inflight
            if not busy:
                t = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True,
                                     name=f"request-{self.served}")
                self._workers.add(t)
                self.served += 1
        if busy:
            log.warning("%d requests in flight: closing a new connection (it runs in-process)",
                        self.max_inflight)
            conn.close()
            return
        try:
            t.start()
        except RuntimeError as e:  # cannot start a thread
            log.error("cannot serve a connection: %s", e)
            with self._lock:
                self._workers.discard(t)
            conn.close()

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._converse(conn)
        except Exception:  # a bug here must not take the daemon down
            log.exception("unexpected error serving a connection")
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _converse(self, conn: socket.socket) -> None:
        conn.settimeout(self.request_timeout)
        pid, uid = -1, -1
        try:
            pid, uid, _gid = _peer_credentials(conn)
            wire.send(conn, wire.hello(__version__, self.pid))
            env, data = wire.parse_request(wire.recv(conn))
        except (OSError, wire.WireError) as e:
            # Nothing started: the executable runs the request itself.
            log.info("connection of pid %d ended before a request: %s", pid, e)
            return
        command = env.get("CNI_COMMAND", "?")
        t0 = time.monotonic()
        if uid not in self.allowed_uids:
            log.warning("refused %s from pid %d: uid %d is not root", command, pid, uid)
            status, out, err = rejected(uid, pid, data, self.path)
        else:
            env = {k: v for k, v in env.items() if k not in wire.LOCAL_ONLY_ENV}
            status, out, err = self.handler(env, data)
        log.debug("%s %s from pid %d: exit %d in %.1f ms", command,
                  env.get("CNI_CONTAINERID", ""), pid, status, (time.monotonic() - t0) * 1e3)
        try:
            wire.send(conn, wire.reply(status, out, err))
        except (OSError, wire.WireError) as e:
            log.warning("%s %s from pid %d finished (exit %d), but its reply could not be "
                        "delivered: %s", command, env.get("CNI_CONTAINERID", ""), pid, status, e)

    def _close_listener(self) -> None:
        """Remove the socket (if it is still ours) and close it: new connections fail now."""
        if self._listener is None:
            return
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)
        self._listener.close()
        self._listener = None


def _peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


def _prepare_directory(directory: str) -> None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=False)
    except FileExistsError:
        pass
    except OSError as e:
        raise DaemonError(f"cannot create {directory}: {e.strerror or e}") from None
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise DaemonError(f"{directory} is not a directory")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise DaemonError(
            f"{directory} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}: "
            "the socket's directory must be writable by this user only (e.g. mode 0700)")


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise DaemonError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left by a daemon that was killed
        log.info("removed the stale socket %s", path)
        return
    finally:
        probe.close()
    raise DaemonError(f"another daemon is serving on {path}")


# ==== the process ============================================================================


WARM_MODULES = ("docker", "docker.transport", "requests", "cni2cnm.netns", "cni2cnm.rtnl",
                "cni2cnm.plugin", "cni2cnm.cni.config", "cni2cnm.cni.result",
                "cni2cnm.cni.skel", "cni2cnm.entry")


def warm_up() -> None:
    """Import now what requests need, so that the first one is as fast as the next."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    from cni2cnm.plugin.config import PluginConf

    PluginConf.model_validate({"cniVersion": "1.1.0", "name": "warm-up", "type": "cni2cnm"})


def serve(path: str, log_level: str = "info") -> int:
    """Run the daemon until SIGTERM/SIGINT. Raises DaemonError if it cannot start."""
    _setup_daemon_log(log_level)
    if os.geteuid() != 0:
        log.warning("not running as root: only root (uid 0) may use the daemon, and the "
                    "plugin needs root to read network namespaces")
    t0 = time.monotonic()
    warm_up()
    from cni2cnm import engine

    engine.keep_clients()  # requests reuse warm engine connections
    server = Server(path)
    server.bind()

    def on_signal(signum: int, _frame: Any) -> None:
        # No logging or locks here: a signal handler.
        if server.stopping:
            return
        _notify("STOPPING=1")
        server.stop(signal.Signals(signum).name)

    with request_logging():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            log.info("cni2cnm %s serving on %s (pid %d, ready in %.0f ms)", __version__,
                     server.path, server.pid, (time.monotonic() - t0) * 1e3)
            _notify("READY=1")
            server.serve_forever()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    log.info("stopped after %d request(s)", server.served)
    return 0


def _setup_daemon_log(level: str) -> None:
    log.setLevel(_LEVELS.get(level.lower(), logging.INFO))
    log.propagate = False
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)  # the real one, before requests route it
        handler.setFormatter(logging.Formatter(
            "%(asctime)s cni2cnm-serve[%(process)d] %(levelname)s %(message)s"))
        log.addHandler(handler)


def _notify(state: str) -> None:
    """sd_notify for `Type=notify` units; nothing without NOTIFY_SOCKET."""
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), target)
