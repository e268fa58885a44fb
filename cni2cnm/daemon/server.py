"""The daemon's socket server: one thread per connection, each running one request.

A connection: accept; the peer's uid is read with SO_PEERCRED at once, before anything is
read from it (another user gets the hello and a CNI error, and nothing of its request is
read); the hello; the request, read whole within REQUEST_DEADLINE (one deadline for the phase,
not per byte); the handler; the reply, sent within the same kind of deadline. Requests for
different containers run concurrently; the store's per-container file locks serialise
requests for the same container, across threads and processes alike.

Only root may use the daemon: the socket is 0600 in a directory that is not writable by
others. The listening socket is made here (bind) or handed over by systemd (adopt).

stop() (SIGTERM): the socket is removed at once (new invocations run in-process),
connections that have not sent a whole request are closed (their executables run the
request in-process), requests in flight finish and are answered. With an idle timeout the
server stops by itself after that long without a connection and without work to keep
(`keep_alive`: the keeper's pending DELs and proxy attachments).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from cni2cnm import __version__
from cni2cnm.daemon import wire

log = logging.getLogger("cni2cnm-serve")  # not under "cni2cnm": that one is the requests'

Handler = Callable[[dict[str, str], bytes], tuple[int, str, str]]

MAX_INFLIGHT = 128  # more connections than this at once are closed: they run in-process
REQUEST_DEADLINE = 10.0  # seconds to receive a whole request, and to send a whole reply
ALLOWED_UIDS = frozenset({0})


class DaemonError(Exception):
    """The daemon cannot start (socket path unusable, another daemon serving)."""


class Observer(Protocol):
    """What the metrics see of each connection (see metrics.py)."""

    def started(self) -> None: ...
    def finished(self, command: str, status: int, stdout: str, seconds: float) -> None: ...


def rejected(uid: int, pid: int, path: str) -> tuple[int, str, str]:
    """The CNI error a peer that is not root gets (its request is never read, so in the
    newest CNI version)."""
    from cni2cnm.cni import version as cniversion
    from cni2cnm.cni.errors import CNIError, Code

    err = CNIError(Code.IO_FAILURE, "permission denied",
                   f"the cni2cnm daemon on {path} serves root (uid 0) only; this plugin runs "
                   f"as uid {uid} (pid {pid})")
    return 1, json.dumps(err.to_dict(cniversion.LATEST)) + "\n", ""


class Server:
    """Accepts connections on a unix socket; a thread per connection runs `handler`."""

    def __init__(self, path: str, handler: Handler | None = None, *,
                 allowed_uids: frozenset[int] = ALLOWED_UIDS, max_inflight: int = MAX_INFLIGHT,
                 request_deadline: float = REQUEST_DEADLINE, idle_timeout: float = 0,
                 started: str = wire.MANUAL, metrics_address: str = "",
                 observer: Observer | None = None,
                 keep_alive: Callable[[], bool] | None = None) -> None:
        if handler is None:
            from cni2cnm.daemon.runner import Runner

            handler = Runner()
        self.path = os.path.abspath(path)
        self.handler = handler
        self.allowed_uids, self.observer = allowed_uids, observer
        self.max_inflight = max_inflight
        self.request_deadline, self.idle_timeout = request_deadline, idle_timeout  # seconds
        self.keep_alive = keep_alive  # true while the daemon has work beyond requests
        self.pid = os.getpid()
        self._hello = wire.hello(__version__, self.pid, wire.build_id(), started,
                                 metrics_address)
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None  # None: not ours to remove (systemd's)
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._waiting: set[socket.socket] = set()  # accepted, whole request not yet read
        self._last_active = time.monotonic()
        self.served = 0
        self.stop_reason = ""

    # ---- the listening socket -----------------------------------------------------------

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

    def adopt(self, listener: socket.socket) -> None:
        """Serve on a listening socket made by someone else (systemd's socket activation):
        it stays theirs, so stop() does not remove it. Its path and directory must be as
        bind() would make them."""
        path = listener.getsockname()
        if isinstance(path, bytes):
            path = path.decode(errors="surrogateescape")
        if not path or path.startswith("\0"):
            raise DaemonError("the socket handed over is not a unix socket with a path")
        self.path = path
        _check_directory(os.path.dirname(path))
        st = os.stat(path)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o022:
            # connecting needs write permission: nobody else may have it
            raise DaemonError(f"the socket handed over, {path}, has owner uid {st.st_uid} and "
                              f"mode {stat.S_IMODE(st.st_mode):04o}: only this user may write "
                              "to it (SocketMode=0600)")
        listener.setblocking(False)
        self._listener = listener

    # ---- serving ------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept until stop() or the idle timeout; then remove the socket, close the
        connections that sent no request yet and wait for requests in flight."""
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        tick = min(self.idle_timeout, 1.0) if self.idle_timeout > 0 else None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select(tick):
                    if key.fileobj is self._listener and not self._stopping.is_set():
                        self._accept()
                if tick is not None and self._idle():
                    self.stop("idle")
        self._close_listener()
        with self._lock:
            pending = list(self._workers)
            idle = len(self._waiting)
            for conn in self._waiting:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # its reader sees EOF: in-process
        log.info("stopping%s: socket removed, %d request(s) in flight%s",
                 f" ({self.stop_reason})" if self.stop_reason else "", len(pending) - idle,
                 f", {idle} connection(s) without a request closed" if idle else "")
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

    def _idle(self) -> bool:
        with self._lock:
            if self._workers or (self.keep_alive is not None and self.keep_alive()):
                self._last_active = time.monotonic()
                return False
        return time.monotonic() - self._last_active >= self.idle_timeout

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
            self._last_active = time.monotonic()
            busy = len(self._workers) >= self.max_inflight
            if not busy:
                t = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True,
                                     name=f"request-{self.served}")
                self._workers.add(t)
                self._waiting.add(conn)
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
                self._waiting.discard(conn)
            conn.close()

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._converse(conn)
        except Exception:  # a bug here must not take the daemon down
            log.exception("unexpected error serving a connection")
        finally:
            with self._lock:
                self._waiting.discard(conn)
                self._workers.discard(threading.current_thread())
                self._last_active = time.monotonic()

    def _converse(self, conn: socket.socket) -> None:
        pid, uid = -1, -1
        try:
            pid, uid, _gid = _peer_credentials(conn)
            conn.settimeout(self.request_deadline)
            wire.send(conn, self._hello)
            if uid not in self.allowed_uids:
                self._refuse(conn, pid, uid)
                return
            deadline = time.monotonic() + self.request_deadline
            body = wire.recv(conn, deadline, limit=4 + wire.MAX_ENV + wire.MAX_STDIN)
            with self._lock:
                self._waiting.discard(conn)  # whole: in flight now, served even if stopping
            env, data = wire.parse_request(body)
        except (OSError, wire.WireError) as e:
            # Nothing started: the executable runs the request itself.
            log.info("connection of pid %d ended before a request: %s", pid, e)
            return
        command = env.get("CNI_COMMAND", "?")
        t0 = time.monotonic()
        env = {k: v for k, v in env.items() if k not in wire.LOCAL_ONLY_ENV}
        if self.observer is not None:
            self.observer.started()
        status, out, err = 1, "", ""
        try:
            status, out, err = self.handler(env, data)
        finally:
            if self.observer is not None:
                self.observer.finished(command, status, out, time.monotonic() - t0)
        log.debug("%s %s from pid %d: exit %d in %.1f ms", command,
                  env.get("CNI_CONTAINERID", ""), pid, status, (time.monotonic() - t0) * 1e3)
        try:
            conn.settimeout(self.request_deadline)  # sendall: one deadline for the whole reply
            wire.send(conn, wire.reply(status, out, err))
        except (OSError, wire.WireError) as e:
            log.warning("%s %s from pid %d finished (exit %d), but its reply could not be "
                        "delivered: %s", command, env.get("CNI_CONTAINERID", ""), pid, status, e)

    def _refuse(self, conn: socket.socket, pid: int, uid: int) -> None:
        """Another user: the CNI error right after the hello, without reading its request;
        then wait (briefly) for it to hang up, so that it reads the error before the close."""
        log.warning("refused a connection from pid %d: uid %d is not root", pid, uid)
        with self._lock:
            self._waiting.discard(conn)
        wire.send(conn, wire.reply(*rejected(uid, pid, self.path)))
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(1.0)
            while conn.recv(65536):  # discarded unread: only waiting for the peer's close
                pass

    def _close_listener(self) -> None:
        """Remove the socket (if it is still ours) and close it: new connections fail now."""
        if self._listener is None:
            return
        if self._identity is not None:
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
    _check_directory(directory)


def _check_directory(directory: str) -> None:
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
