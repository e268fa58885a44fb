"""The click command `cni2cnm serve` (cni2cnm.cli registers it; `python -m cni2cnm.daemon` and
the daemons the plugin and systemd start run it alone). Its errors end as every CLI command's
do (cli.base.Failure)."""

from __future__ import annotations

import sys

import click

from cni2cnm.cni.logs import LEVELS
from cni2cnm.daemon.wire import DEFAULT_SOCKET, MANUAL, ON_DEMAND


@click.command("serve")
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True,
              metavar="PATH", help="Unix socket to serve plugin requests on.")
@click.option("--log-level", type=click.Choice(list(LEVELS)),
              default="info", show_default=True,
              help="Level of the daemon's own log (stderr). Requests log as in-process: "
                   "CNI2CNM_LOG_LEVEL, else the config's logLevel, to stderr or logFile.")
@click.option("--log-file", metavar="PATH", default=None,
              help="Write the daemon's own log to PATH instead of stderr.")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
              help="Exit after this long without a request (0: never). A daemon the plugin "
                   "starts on demand uses 600.")
@click.option("--metrics-address", metavar="HOST:PORT", default="",
              help="Serve Prometheus metrics on http://HOST:PORT/metrics and a health check "
                   "on /healthz (off by default; e.g. 127.0.0.1:9584).")
@click.option("--started", type=click.Choice([MANUAL, ON_DEMAND]), default=MANUAL,
              hidden=True)
@click.option("--lock-fd", type=int, default=None, hidden=True)
@click.option("--priority", type=int, default=None, hidden=True)
def serve(socket_path: str, log_level: str, log_file: str | None, idle_timeout: float,
          metrics_address: str, started: str, lock_fd: int | None,
          priority: int | None) -> None:
    """Run the plugin as a daemon, so that each invocation skips Python's start-up.

    While it runs, the cni2cnm executable forwards ADD, DEL, CHECK, GC and STATUS to it over
    the socket and prints its answer, which is byte for byte what it would have printed
    itself. Without a daemon, or when it does not answer, the executable runs the request
    in-process: a stopped daemon never stops pods. VERSION never uses it.

    The executable finds the socket in $CNI2CNM_DAEMON_SOCKET, else in the config's
    `daemonSocket` key, else at the default path; an empty value means no daemon.

    Only root may use it (socket mode 0600, peer checked with SO_PEERCRED). SIGTERM removes
    the socket, finishes requests in flight and exits 0. Under systemd socket activation
    (LISTEN_FDS) it serves the socket it is handed instead of making one.

    Without any of this, the plugin starts a daemon itself when none answers (config key
    `daemon`: "auto", the default) and that one exits after 10 minutes without a request.

    \b
    Example:
      cni2cnm serve --socket /run/cni2cnm/cni2cnm.sock --metrics-address 127.0.0.1:9584
    """
    from cni2cnm.daemon.process import serve as run
    from cni2cnm.daemon.server import DaemonError

    try:
        code = run(socket_path, log_level, started=started, idle_timeout=idle_timeout,
                   lock_fd=lock_fd, log_file=log_file, metrics_address=metrics_address,
                   priority=priority)
    except DaemonError as e:
        from cni2cnm.cli.base import Failure  # not before: the CLI imports this module

        raise Failure(str(e)) from None
    sys.exit(code)
