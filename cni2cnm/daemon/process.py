"""The `cni2cnm serve` process: warm up, get the socket, serve until SIGTERM or idle.

The listening socket is made by the daemon (bind), or handed over by systemd's socket
activation (the sd_listen_fds protocol: LISTEN_PID is this process, LISTEN_FDS >= 1, the
socket is fd 3). A daemon started on demand by the plugin (starter.py) is given the start
lock's descriptor (--lock-fd) and closes it once its socket is bound, or when it gives up.

Requests get engines from one pool of warm clients, passed to each Engine by the engine
factory (engines.pooled), and log through logroute: nothing process-wide changes per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from cni2cnm import __version__
from cni2cnm.cni import logs
from cni2cnm.daemon import logroute, wire
from cni2cnm.daemon.server import DaemonError, Server

if TYPE_CHECKING:
    from cni2cnm.daemon.runner import Runner

log = logging.getLogger("cni2cnm-serve")

SD_LISTEN_FDS_START = 3
REPLACE_WAIT = 10.0  # seconds an on-demand daemon waits for the one it replaces to go

WARM_MODULES = ("docker", "docker.transport", "requests", "cni2cnm.netns", "cni2cnm.rtnl",
                "cni2cnm.plugin.handlers", "cni2cnm.plugin.config", "cni2cnm.cni.result",
                "cni2cnm.cni.skel")


def warm_up() -> None:
    """Import now what requests need, so that the first one is as fast as the next."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    from cni2cnm.plugin.config import PluginConf

    PluginConf.model_validate({"cniVersion": "1.1.0", "name": "warm-up", "type": "cni2cnm"})


def activation_socket() -> socket.socket | None:
    """The listening socket systemd handed over, if any (and the variables unset)."""
    pid, fds = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not (pid.isdigit() and int(pid) == os.getpid() and fds.isdigit() and int(fds) >= 1):
        return None
    if int(fds) > 1:
        raise DaemonError(f"systemd handed over {fds} sockets; the unit must listen on one")
    os.set_inheritable(SD_LISTEN_FDS_START, False)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise DaemonError("the socket systemd handed over is not a unix stream socket "
                          "(ListenStream=/run/cni2cnm/cni2cnm.sock)")
    return sock


def serve(path: str, log_level: str = "info", *, started: str = wire.MANUAL,
          idle_timeout: float = 0, lock_fd: int | None = None, log_file: str | None = None,
          metrics_address: str = "", priority: int | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or idle). Raises DaemonError if it cannot.
    `priority`: the CPU priority (nice value) to take once the socket is bound (a daemon
    started on demand starts at a lower one)."""
    try:
        return _serve(path, log_level, started, idle_timeout, lock_fd, log_file,
                      metrics_address, priority)
    except DaemonError as e:
        if log_file:  # a daemon started on demand has no stderr anyone reads
            log.error("cannot serve: %s", e)
        raise
    finally:
        if lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(lock_fd)


def _serve(path: str, log_level: str, started: str, idle_timeout: float,
           lock_fd: int | None, log_file: str | None, metrics_address: str,
           priority: int | None) -> int:
    _setup_daemon_log(log_level, log_file)
    if os.geteuid() != 0:
        log.warning("not running as root: only root (uid 0) may use the daemon, and the "
                    "plugin needs root to read network namespaces")
    t0 = time.monotonic()
    activated = activation_socket()
    if activated is not None:
        started = wire.SYSTEMD
    warm_up()
    from cni2cnm.daemon import engines
    from cni2cnm.daemon.keeper import Keeper
    from cni2cnm.daemon.runner import Runner
    from cni2cnm.engine import ClientPool

    server: Server  # made below, once the exporter's address is known; /healthz asks it
    metrics, exporter = None, None
    if metrics_address:
        from cni2cnm.daemon.client import FALLBACKS
        from cni2cnm.daemon.metrics import Metrics, MetricsServer

        metrics = Metrics(os.path.join(os.path.dirname(os.path.abspath(path)), FALLBACKS))
        try:
            exporter = MetricsServer(metrics_address, metrics, lambda: not server.stopping)
        except (OSError, ValueError) as e:
            raise DaemonError(f"cannot serve metrics on {metrics_address}: {e}") from None
    factory = engines.pooled(ClientPool(), metrics)
    keeper = Keeper(factory)
    runner = Runner(factory, os.environ.get("CNI2CNM_LOG_LEVEL"), keeper=keeper)
    server = Server(path, runner, idle_timeout=idle_timeout, started=started,
                    observer=metrics, metrics_address=exporter.address if exporter else "",
                    keep_alive=keeper.watching)
    if activated is not None:
        server.adopt(activated)
    else:
        _bind(server, started)
    if lock_fd is not None:
        os.close(lock_fd)  # bound: the next starter finds the socket
        lock_fd = None
    if priority is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, priority)
        except OSError as e:
            log.warning("cannot go back to CPU priority %d: %s", priority, e)
    logroute.install()
    _finish_pending_dels(server.path, runner)

    def on_signal(signum: int, _frame: Any) -> None:
        # No logging or locks here: a signal handler.
        if server.stopping:
            return
        _notify("STOPPING=1")
        server.stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if exporter is not None:
            exporter.start()
        keeper.start()
        log.info("cni2cnm %s serving on %s (pid %d, %s, ready in %.0f ms%s%s)", __version__,
                 server.path, server.pid, started, (time.monotonic() - t0) * 1e3,
                 f", exits after {idle_timeout:g} s idle" if idle_timeout else "",
                 f", metrics on http://{exporter.address}/metrics" if exporter else "")
        if started == wire.ON_DEMAND:  # the starter moved it out of its caller's cgroups
            log.info("cgroups: %s", _own_cgroups())
        _notify("READY=1")
        server.serve_forever()
    finally:
        keeper.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        if exporter is not None:
            exporter.stop()
    log.info("stopped after %d request(s)", server.served)
    return 0


def _finish_pending_dels(path: str, runner: Runner) -> None:
    """The DELs the static shim kept while no daemon answered (pending.py), beside serving:
    not a daemon thread, so a daemon told to stop finishes the one it runs."""
    import threading

    from cni2cnm.daemon import pending

    threading.Thread(target=pending.replay, args=(path, runner), name="pending-dels").start()


def _bind(server: Server, started: str) -> None:
    """bind(). A daemon started on demand to replace another waits for that one to go; a
    daemon started by hand (or a DaemonSet) takes over from one the plugin started on
    demand: it stops it, and waits for it to go."""
    deadline = time.monotonic() + REPLACE_WAIT
    stopped = False
    while True:
        try:
            server.bind()
            return
        except DaemonError as e:
            if "another daemon" not in str(e) or time.monotonic() >= deadline:
                raise
            if started != wire.ON_DEMAND and not stopped:
                stopped = _stop_on_demand(server.path)
                if not stopped:
                    raise
        time.sleep(0.1)


def _stop_on_demand(path: str) -> bool:
    from cni2cnm.daemon import status

    st = status.probe(path)
    if not st.running or st.started != wire.ON_DEMAND or st.pid <= 1:
        return False
    log.info("taking over %s from the daemon the plugin started on demand (pid %d)", path,
             st.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(st.pid, signal.SIGTERM)
    return True


def _setup_daemon_log(level: str, log_file: str | None) -> None:
    log.setLevel(logs.level(level) or logging.INFO)
    log.propagate = False
    if not log.handlers:
        handler: logging.Handler
        try:  # created 0600, root's alone, whatever the umask: as the plugin's logFile
            handler = logs.file_handler(log_file) if log_file else \
                logging.StreamHandler(sys.stderr)
        except OSError as e:
            raise DaemonError(f"cannot log to {log_file}: {e.strerror or e}") from None
        handler.setFormatter(logging.Formatter(
            "%(asctime)s cni2cnm-serve[%(process)d] %(levelname)s %(message)s"))
        log.addHandler(handler)


def _own_cgroups() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            return "; ".join(f.read().split())
    except OSError as e:
        return f"unknown ({e.strerror})"


def _notify(state: str) -> None:
    """sd_notify for `Type=notify` units; nothing without NOTIFY_SOCKET."""
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), target)
