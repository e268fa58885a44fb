"""The click command `cni2cnm serve` (registered on the CLI with `cli.add_command(serve)`)."""

from __future__ import annotations

import sys

import click

from cni2cnm.daemon.wire import DEFAULT_SOCKET, SOCKET_ENV


class _CannotServe(click.ClickException):
    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"cni2cnm: error: {self.format_message()}", err=True)


@click.command("serve")
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True,
              metavar="PATH", help="Unix socket to serve plugin requests on.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True,
              help="Level of the daemon's own log (stderr). Requests log as in-process: "
                   "CNI2CNM_LOG_LEVEL, else the config's logLevel, to stderr or logFile.")
def serve(socket_path: str, log_level: str) -> None:
    """Run the plugin as a daemon, so that each invocation skips Python's start-up.

    While it runs, the cni2cnm executable forwards ADD, DEL, CHECK, GC and STATUS to it over
    the socket and prints its answer, which is byte for byte what it would have printed
    itself. Without a daemon, or when it does not answer, the executable runs the request
    in-process: a stopped daemon never stops pods. VERSION never uses it.

    The executable finds the socket in $CNI2CNM_DAEMON_SOCKET, else in the config's
    `daemonSocket` key, else at the default path; an empty value means no daemon.

    Only root may use it (socket mode 0600, peer checked with SO_PEERCRED). SIGTERM removes
    the socket, finishes requests in flight and exits 0.

    \b
    Example:
      cni2cnm serve --socket /run/cni2cnm/cni2cnm.sock
    """
    from cni2cnm.daemon.server import DaemonError
    from cni2cnm.daemon.server import serve as run

    try:
        code = run(socket_path, log_level)
    except DaemonError as e:
        raise _CannotServe(str(e)) from None
    sys.exit(code)


__all__ = ["SOCKET_ENV", "serve"]
