"""The `cni2cnm` command line (when CNI_COMMAND is not set).

Commands are thin: the work is in cni2cnm/ops/. This module is the edge where every
library, engine, store and CNI error becomes one line on stderr and a non-zero exit
status, never a traceback (CNI2CNM_LOG_LEVEL=debug logs the traceback of an unexpected
error).

Exit status, for every command: 0 success; 1 the command ran and found a problem (inspect:
drift; doctor: a FAIL; add/check/del/gc/status: the plugin's CNI error, printed on stdout as
the plugin prints it); 2 the command could not do its job (bad usage, engine unreachable,
unreadable file, refused overwrite, ...).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from cni2cnm import __version__
from cni2cnm.cni.errors import CNIError
from cni2cnm.cni.version import SUPPORTED_VERSIONS
from cni2cnm.daemon.wire import DEFAULT_SOCKET
from cni2cnm.engine import DEFAULT_HOST, EngineError
from cni2cnm.ops import OpError
from cni2cnm.ops.install import DEFAULT_BIN_DIR, DEFAULT_CONF_DIR
from cni2cnm.plugin.config import DEFAULT_STATE_DIR
from cni2cnm.store import StoreError

log = logging.getLogger("cni2cnm.cli")

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FOUND, EXIT_ERROR = 1, 2
DEFAULT_CACHE_DIRS_HELP = ("/var/lib/cni/results, /var/lib/cni/cache/results and "
                           "<state-dir>/cli-results")


# ==== the error edge ========================================================================


class Failure(click.ClickException):
    """One line on stderr, a non-zero exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"cni2cnm: error: {self.format_message()}", err=True, color=use_color())


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OpError as e:
            raise Failure(str(e), e.exit_code) from None
        except CNIError as e:
            raise Failure(f"{e} (CNI error {e.code})") from None
        except EngineError as e:
            raise Failure(f"Docker engine: {e.explanation}") from None
        except StoreError as e:
            raise Failure(f"state store: {e}") from None
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # click quiets a closed pipe (`cni2cnm inspect | head`)
            raise Failure(_one_line(e)) from None
        except Exception as e:
            log.debug("unexpected error", exc_info=True)
            raise Failure(f"internal error: {type(e).__name__}: {_one_line(e)} (set "
                          "CNI2CNM_LOG_LEVEL=debug for the traceback)") from None


# ==== output ================================================================================


def use_color() -> bool | None:
    """None lets click decide (colour on a TTY only); NO_COLOR turns it off everywhere."""
    return False if os.environ.get("NO_COLOR") else None


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    click.echo(text, err=err, nl=nl, color=use_color())


STATUS_COLORS = {"OK": "green", "WARN": "yellow", "FAIL": "red"}


def print_table(headers: list[str], rows: list[list[str]],
                color_cell: Callable[[int, str], str] | None = None) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: list[str], style: Callable[[int, str], str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            padded = cell if i == last else cell.ljust(widths[i])
            parts.append(style(i, padded))
        return "  ".join(parts).rstrip()

    echo(line(headers, lambda i, s: click.style(s, bold=True)))
    for r in rows:
        echo(line(r, color_cell or (lambda i, s: s)))


def print_json(doc: Any) -> None:
    echo(json.dumps(doc, indent=2))


# ==== shared options ========================================================================


def common_options(f: F) -> F:
    """--docker-host and --state-dir, on every command that touches the engine or the store."""
    f = click.option(
        "--state-dir", default=DEFAULT_STATE_DIR, show_default=True, metavar="DIR",
        help="the plugin's state directory (its attachment store); the conflist's stateDir",
    )(f)
    f = click.option(
        "--docker-host", envvar="DOCKER_HOST", default=DEFAULT_HOST, metavar="URL",
        help=f"Docker engine address [default: $DOCKER_HOST, else {DEFAULT_HOST}]",
    )(f)
    return f


def settings(ctx: click.Context, docker_host: str, state_dir: str) -> Any:
    from cni2cnm.ops.invoke import Settings

    return Settings(
        docker_host=docker_host,
        state_dir=os.path.abspath(state_dir),
        docker_host_explicit=ctx.get_parameter_source("docker_host") == ParameterSource.COMMANDLINE,
        state_dir_explicit=ctx.get_parameter_source("state_dir") == ParameterSource.COMMANDLINE,
    )


def make_engine(docker_host: str, timeout: float = 15.0) -> Any:
    from cni2cnm.engine import Engine

    return Engine(docker_host, timeout=timeout)


def finish(code: int) -> NoReturn:
    sys.exit(code)


# ==== the group =============================================================================


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"],
                                          "max_content_width": 100})
def cli() -> None:
    """cni2cnm: a CNI plugin that attaches CNI containers to Docker (CNM) networks.

    Runtimes execute this same program with CNI_COMMAND set; without it, these
    commands help operators see and drive what the plugin does.

    \b
    Exit status: 0 success; 1 a problem found (drift, a FAIL, the plugin's
    CNI error); 2 the command could not run (usage, engine unreachable,
    unreadable files, ...).

    \b
    Example:
      cni2cnm doctor --network pods
    """
    from cni2cnm.cni import logs

    logs.setup()


@cli.command()
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--daemon-socket", default=None, metavar="PATH",
              help="the daemon socket to report on [default: $CNI2CNM_DAEMON_SOCKET, else "
                   f"{DEFAULT_SOCKET}]")
def version(output: str, daemon_socket: str | None) -> None:
    """Print the cni2cnm version, the CNI spec versions it supports, and the daemon on the
    socket (running or not; its version, pid, and how it was started: on-demand, systemd or
    manual).

    Example: cni2cnm version -o json
    """
    from cni2cnm.daemon import status

    daemon_socket = _daemon_socket(daemon_socket)
    daemon = status.probe(daemon_socket) if daemon_socket else None
    if output == "json":
        echo(json.dumps({"version": __version__, "cniVersions": list(SUPPORTED_VERSIONS),
                         "daemon": daemon.to_json() if daemon else None}))
    else:
        echo(f"cni2cnm {__version__}")
        echo(f"CNI spec versions: {', '.join(SUPPORTED_VERSIONS)}")
        echo(f"daemon: {daemon.describe() if daemon else 'disabled (empty socket path)'}")


# ==== inspect ===============================================================================


@cli.command("inspect")
@click.argument("target", required=False, metavar="[ATTACHMENT-OR-CONTAINER]")
@click.option("-n", "--network", metavar="NAME",
              help="only attachments of this CNI network (or Docker network) name")
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json"]), default="table",
              show_default=True)
@click.option("--cache-dir", "cache_dirs", multiple=True, metavar="DIR",
              help=f"runtime result cache directory (repeatable) [default: "
                   f"{DEFAULT_CACHE_DIRS_HELP}]")
@click.option("--schema", is_flag=True, help="print the keys of -o json's objects and exit")
@common_options
@click.pass_context
def inspect_cmd(ctx: click.Context, target: str | None, network: str | None, output: str,
                cache_dirs: tuple[str, ...], schema: bool, docker_host: str,
                state_dir: str) -> None:
    """Show recorded attachments, the engine's live state and any drift between them.

    Every attachment the store recorded, joined with the Docker container, the network,
    the network namespace and the runtime's cached result (libcni's cache, and the one
    `cni2cnm add` keeps). The optional argument selects by CNI container ID (a prefix is
    enough), Docker container name or ID, CID/IFNAME, or an absolute network namespace
    path.

    DRIFT: incomplete (an interrupted ADD), engine-unreachable, network-gone,
    container-gone, recorded-not-attached, ips-differ, netns-gone,
    runtime-differs (the runtime's cache has other addresses), runtime-only (the
    runtime's cache holds a cni2cnm attachment the store does not know).

    -o json prints a list of objects, every key always present; the keys are
    listed by `cni2cnm inspect --schema`.

    Exit status: 0 no drift, 1 drift, 2 errors (with an unreachable engine the
    store's view is still printed, with drift engine-unreachable).

    \b
    Examples:
      cni2cnm inspect
      cni2cnm inspect pod1 -o wide
      cni2cnm inspect --network pods -o json | jq '.[] | select(.drift != [])'
      cni2cnm inspect --schema
    """
    if schema:
        from cni2cnm.ops.inspect_rows import describe_rows

        echo(describe_rows())
        return
    from cni2cnm.ops import inspect as ops

    s = settings(ctx, docker_host, state_dir)
    dirs = list(cache_dirs) or ops.default_cache_dirs(s.state_dir)
    engine = make_engine(s.docker_host)
    try:
        report = ops.inspect(s.state_dir, engine, dirs, network=network, target=target)
    finally:
        engine.close()
    for w in report.warnings:
        echo(f"cni2cnm: warning: {w}", err=True)
    if report.engine_down:
        echo(f"cni2cnm: error: the Docker engine did not answer ({report.engine_down}); "
             "showing what the store recorded", err=True)
    for r in report.rows:
        if r["error"]:
            echo(f"cni2cnm: error: {r['containerId']}/{r['ifname']}: {r['error']}", err=True)
    if output == "json":
        print_json(report.rows)
    elif report.rows:
        from cni2cnm.ops.inspect_rows import table_rows

        headers, cells = table_rows(report.rows, wide=output == "wide")
        drift_col = len(headers) - 1

        def color(i: int, text: str) -> str:
            if i != drift_col:
                return text
            return click.style(text, fg="green" if text.strip() == "-" else "red")

        print_table(headers, cells, color)
    if not report.rows:
        what = f" matching {target!r}" if target else ""
        what += f" in network {network!r}" if network else ""
        echo(f"cni2cnm: no attachments{what} recorded in {s.state_dir}", err=True)
        if target:
            finish(EXIT_ERROR)
    finish(report.exit_code)


# ==== add / check / del ======================================================================


def attachment_options(with_request: bool) -> Callable[[F], F]:
    def deco(f: F) -> F:
        opts = [
            click.argument("container"),
            click.option("-n", "--network", metavar="NAME",
                         help="CNI network name; also the Docker network unless the config's "
                              "\"network\" says otherwise (required without --conf)"),
            click.option("--ifname", default="eth0", show_default=True,
                         help="CNI_IFNAME: the interface name inside the container"),
        ]
        if with_request:
            opts += [
                click.option("--ip", "ips", multiple=True, metavar="ADDR",
                             help="static address (repeatable: one IPv4, one IPv6), as "
                                  "runtimeConfig.ips"),
                click.option("--mac", metavar="MAC", help="MAC address, as runtimeConfig.mac"),
                click.option("--alias", "aliases", multiple=True, metavar="NAME",
                             help="DNS alias on the Docker network (repeatable), as "
                                  "runtimeConfig.aliases"),
            ]
        opts += [
            click.option("--cni-version", metavar="V",
                         type=click.Choice(list(SUPPORTED_VERSIONS)),
                         help="cniVersion of the config [default: the --conf file's, else "
                              "1.0.0]"),
            click.option("--conf", "conf_file", metavar="FILE",
                         help="a .conf or .conflist file: use its cni2cnm entry (a conflist's "
                              "cniVersion and name copied in, as libcni does)"),
            common_options,
            click.pass_context,
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f
    return deco


def run_attachment(ctx: click.Context, command: str, container: str, **kw: Any) -> NoReturn:
    from cni2cnm.ops.invoke import attachment_op

    s = settings(ctx, kw.pop("docker_host"), kw.pop("state_dir"))
    outcome = attachment_op(command, s, container, **kw)
    report_outcome(outcome)


def report_outcome(outcome: Any) -> NoReturn:
    for note in outcome.notes:
        echo(f"cni2cnm: {note}", err=True)
    echo(outcome.stdout, nl=False)
    line = outcome.error_line()
    if line:
        echo(f"cni2cnm: {line}", err=True)
    finish(outcome.rc)


@cli.command()
@attachment_options(with_request=True)
def add(ctx: click.Context, container: str, **kw: Any) -> None:
    """Attach a container through the plugin, as a runtime does (CNI ADD).

    CONTAINER is a Docker container name or ID (CNI_CONTAINERID is its full ID, CNI_NETNS
    /proc/<pid>/ns/net), or a network namespace path, anything containing '/'
    (CNI_CONTAINERID is then cni2cnm-<20 hex of sha512(path)>, as cnitool makes it). The
    plugin runs in this process through its own dispatcher, with CNI_ARGS=IgnoreUnknown=1.
    Its stdout (the result or the CNI error) is printed as it is, and its status is the
    exit status. The result is kept in <state-dir>/cli-results for check and del.

    \b
    Examples:
      cni2cnm add pod1 --network pods
      cni2cnm add /run/netns/ns1 --network pods --ip 10.240.0.5/24 --alias web
      cni2cnm add pod1 --conf /etc/cni/net.d/10-cni2cnm-pods.conflist
    """
    run_attachment(ctx, "ADD", container, **kw)


@cli.command()
@attachment_options(with_request=False)
def check(ctx: click.Context, container: str, **kw: Any) -> None:
    """Check an attachment through the plugin, as a runtime does (CNI CHECK).

    CONTAINER as for add; a container attached through its namespace path is also found
    by its Docker name, and a removed one by its CNI container ID. The ADD result kept by
    `cni2cnm add` is sent as prevResult (CHECK needs it and cniVersion >= 0.4.0).

    \b
    Example:
      cni2cnm check pod1 --network pods
    """
    run_attachment(ctx, "CHECK", container, **kw)


@cli.command("del")
@attachment_options(with_request=False)
def delete(ctx: click.Context, container: str, **kw: Any) -> None:
    """Detach a container through the plugin, as a runtime does (CNI DEL).

    CONTAINER as for check. The cached ADD result is sent as prevResult and removed when
    DEL succeeds. DEL succeeds when there is nothing left to remove.

    \b
    Example:
      cni2cnm del pod1 --network pods
    """
    run_attachment(ctx, "DEL", container, **kw)


# ==== gc / status ===========================================================================


@cli.command()
@click.option("-n", "--network", metavar="NAME", help="CNI network name (required without --conf)")
@click.option("--keep", multiple=True, metavar="CONTAINERID/IFNAME",
              help="an attachment that is still valid (repeatable; IFNAME defaults to eth0)")
@click.option("--all", "remove_all", is_flag=True,
              help="confirm removing every attachment of the network (needed without --keep)")
@click.option("--conf", "conf_file", metavar="FILE", help="a .conf or .conflist file to use")
@common_options
@click.pass_context
def gc(ctx: click.Context, network: str | None, keep: tuple[str, ...], remove_all: bool,
       conf_file: str | None, docker_host: str, state_dir: str) -> None:
    """Remove stale attachments of a network through the plugin (CNI GC, cniVersion 1.1.0).

    Every recorded attachment of the network that is not kept with --keep (sent as
    cni.dev/valid-attachments), and every one whose container is gone, is detached and
    forgotten. Without --keep every attachment goes: that needs --all.

    \b
    Examples:
      cni2cnm gc --network pods --keep 3f2a...c1/eth0 --keep 9b1e...07/eth0
      cni2cnm gc --network pods --all
    """
    from cni2cnm.ops.invoke import network_op, parse_keep

    if not keep and not remove_all:
        raise Failure("without --keep, GC detaches every attachment of the network; pass "
                      "--all to confirm, or --keep CONTAINERID/IFNAME for each one to keep")
    s = settings(ctx, docker_host, state_dir)
    report_outcome(network_op("GC", s, network=network, conf_file=conf_file,
                              keep=parse_keep(keep)))


@cli.command()
@click.option("-n", "--network", metavar="NAME", help="CNI network name (required without --conf)")
@click.option("--conf", "conf_file", metavar="FILE", help="a .conf or .conflist file to use")
@common_options
@click.pass_context
def status(ctx: click.Context, network: str | None, conf_file: str | None, docker_host: str,
           state_dir: str) -> None:
    """Ask the plugin whether it can serve ADDs for a network (CNI STATUS, cniVersion 1.1.0).

    Prints nothing and exits 0 when it can; else prints the plugin's error (code 50, or
    51 when attachments of a vanished network are recorded) and exits 1.

    \b
    Example:
      cni2cnm status --network pods && echo ready
    """
    from cni2cnm.ops.invoke import network_op

    s = settings(ctx, docker_host, state_dir)
    outcome = network_op("STATUS", s, network=network, conf_file=conf_file)
    if outcome.rc == 0:
        echo(f"cni2cnm: network {network or conf_file}: available", err=True)
    report_outcome(outcome)


# ==== conflist ==============================================================================


@cli.command()
@click.argument("docker_network", metavar="DOCKER-NETWORK")
@click.option("--name", metavar="NAME", help="CNI network name [default: the Docker network's]")
@click.option("--cni-version", default="1.0.0", show_default=True,
              type=click.Choice(list(SUPPORTED_VERSIONS)))
@click.option("--chain", multiple=True, metavar="PLUGIN[,PLUGIN...]",
              help="plugins to chain after cni2cnm, in order (e.g. tuning,portmap,bandwidth)")
@click.option("-o", "--output", "out_file", default="-", metavar="FILE",
              help="write to FILE instead of stdout")
@common_options
@click.pass_context
def conflist(ctx: click.Context, docker_network: str, name: str | None, cni_version: str,
             chain: tuple[str, ...], out_file: str, docker_host: str, state_dir: str) -> None:
    """Print a ready conflist for an existing Docker network.

    plugins[0] is cni2cnm with "network" set to the Docker network's name and the ips,
    mac and aliases capabilities (portMappings too when portmap is chained); each chained
    plugin gets a minimal entry. The network's driver, scope, subnets and gateways, as the
    engine reports them, are noted under the entry's args.cni2cnm. dockerHost and stateDir
    are written when they are not the defaults. The result is validated through the
    plugin's own config parser before it is written.

    \b
    Examples:
      cni2cnm conflist pods
      cni2cnm conflist pods --chain tuning,portmap -o /tmp/10-pods.conflist
    """
    from cni2cnm.ops import conflist as ops
    from cni2cnm.ops.files import atomic_write

    s = settings(ctx, docker_host, state_dir)
    engine = make_engine(s.docker_host)
    try:
        doc = ops.for_network(engine, docker_network, name=name, cni_version=cni_version,
                              chain=ops.parse_chain(chain), docker_host=s.docker_host,
                              state_dir=s.state_dir)
    finally:
        engine.close()
    text = ops.render(doc)
    if out_file == "-":
        echo(text, nl=False)
    else:
        atomic_write(out_file, text, 0o644)
        echo(f"cni2cnm: wrote {out_file}", err=True)


# ==== install ===============================================================================


@cli.command()
@click.option("--bin-dir", default=DEFAULT_BIN_DIR, show_default=True, metavar="DIR",
              help="CNI plugin directory (CNI_PATH)")
@click.option("--conf-dir", default=DEFAULT_CONF_DIR, show_default=True, metavar="DIR",
              help="CNI network configuration directory")
@click.option("-n", "--network", metavar="DOCKER-NETWORK",
              help="also write <conf-dir>/10-cni2cnm-<network>.conflist for this network")
@click.option("--force", is_flag=True, help="replace files that differ from what would be written")
@click.option("--uninstall", is_flag=True,
              help="remove what install placed in these directories (only files unchanged "
                   "since)")
@click.option("--systemd", "systemd", type=click.Choice(["auto", "yes", "no"]),
              default="auto", show_default=True,
              help="write and enable socket-activated units for the daemon (auto: where "
                   "systemd is PID 1; elsewhere the plugin starts its daemon on demand)")
@click.option("--daemon-socket", default=None, metavar="PATH",
              help="the daemon's socket: install replaces an on-demand daemon of another "
                   "version there, --uninstall stops the one the plugin started (empty: none) "
                   f"[default: $CNI2CNM_DAEMON_SOCKET, else {DEFAULT_SOCKET}]")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@common_options
@click.pass_context
def install(ctx: click.Context, bin_dir: str, conf_dir: str, network: str | None, force: bool,
            uninstall: bool, systemd: str, daemon_socket: str | None, output: str,
            docker_host: str, state_dir: str) -> None:
    """Install this cni2cnm as a CNI plugin on this node (or --uninstall it).

    Writes <bin-dir>/cni2cnm, a small script that runs this installation (this Python,
    isolated, with this cni2cnm package), and with --network the conflist that
    `cni2cnm conflist` makes. Running it again changes nothing ("unchanged"); a file with
    other content is refused unless --force. What was written is recorded in
    <state-dir>/install-manifest.json, and --uninstall removes exactly those files while
    they still have that content; it never touches other files.

    The daemon: where systemd is PID 1, install writes and enables a socket-activated
    cni2cnm.socket / cni2cnm.service pair (recorded in the manifest too); elsewhere the
    plugin starts a daemon on demand. Either way pods go through a warm daemon with no
    further step. install stops an on-demand daemon of another version (an upgrade);
    --uninstall stops and removes the units, and stops the daemon the plugin started.

    \b
    Examples:
      cni2cnm install --network pods
      cni2cnm install --uninstall
    """
    from cni2cnm.ops import install as ops

    s = settings(ctx, docker_host, state_dir)
    daemon_socket = _daemon_socket(daemon_socket)
    if uninstall:
        actions = _stop_daemon(daemon_socket, stale_only=False)
        actions += ops.uninstall(s.state_dir, bin_dir, conf_dir, network)
        actions += _uninstall_units(s.state_dir)
    else:
        planned = [ops.Planned(ops.plugin_path(bin_dir), ops.wrapper_text(), 0o755)]
        if network:
            from cni2cnm.ops import conflist as cl

            engine = make_engine(s.docker_host)
            try:
                doc = cl.for_network(engine, network, docker_host=s.docker_host,
                                     state_dir=s.state_dir)
            finally:
                engine.close()
            planned.append(ops.Planned(ops.conflist_path(conf_dir, network), cl.render(doc),
                                       0o644))
        units = _with_systemd(systemd)
        if units:
            from cni2cnm.ops import service

            planned += [ops.Planned(u.path, u.content, 0o644)
                        for u in service.units(daemon_socket or DEFAULT_SOCKET)]
        actions = ops.install(planned, s.state_dir, force)
        if units:
            actions += _activate_units(actions)
        else:
            actions += _stop_daemon(daemon_socket, stale_only=True)
    if output == "json":
        print_json([a.to_json() for a in actions])
    else:
        colors = {ops.KEPT: "yellow", ops.REMOVED: "green", ops.INSTALLED: "green",
                  ops.REPLACED: "yellow"}
        for a in actions:
            note = f" ({a.note})" if a.note else ""
            echo(f"{click.style(a.action, fg=colors.get(a.action))} {a.path}{note}")
        if not actions:
            echo("nothing to uninstall", err=True)
    finish(EXIT_FOUND if any(a.action == ops.KEPT for a in actions) else 0)


def _daemon_socket(given: str | None) -> str:
    """--daemon-socket, else $CNI2CNM_DAEMON_SOCKET (empty too: no daemon), else the
    default, as the plugin finds it."""
    if given is not None:
        return given
    return os.environ.get("CNI2CNM_DAEMON_SOCKET", DEFAULT_SOCKET)


def _with_systemd(choice: str) -> bool:
    if choice == "auto":
        from cni2cnm.ops import service

        return service.systemd_booted()
    return choice == "yes"


def _activate_units(actions: list[Any]) -> list[Any]:
    from cni2cnm.ops import install as ops
    from cni2cnm.ops import service

    unit_paths = {u.path for u in service.units()}
    changed = any(a.path in unit_paths and a.action in (ops.INSTALLED, ops.REPLACED)
                  for a in actions)
    return [ops.Action(service.SOCKET_UNIT, "failed", f)
            for f in service.activate(changed)] or [
        ops.Action(service.SOCKET_UNIT, "enabled", "socket activation: systemd starts the "
                   "daemon on the first request")]


def _uninstall_units(state_dir: str) -> list[Any]:
    from cni2cnm.ops import install as ops
    from cni2cnm.ops import service

    if not service.installed_units(state_dir):
        return []
    out = [ops.Action(service.SOCKET_UNIT, "failed", f) for f in service.deactivate()]
    out += [ops.Action(*done) for done in service.remove_units(state_dir)]
    service.reload()
    return out


def _stop_daemon(socket_path: str, *, stale_only: bool) -> list[Any]:
    from cni2cnm.daemon import status
    from cni2cnm.ops import install as ops

    if not socket_path:
        return []
    stopped = status.stop_on_demand(socket_path, stale_only=stale_only)
    if stopped is None:
        return []
    why = (f"it ran cni2cnm {stopped.version}: the next request starts this version"
           if stale_only else "started on demand by the plugin")
    return [ops.Action(socket_path, "stopped", f"daemon pid {stopped.pid}; {why}")]


# ==== doctor ================================================================================


@cli.command()
@click.option("-n", "--network", metavar="DOCKER-NETWORK",
              help="also check this Docker network and that a config attaches to it")
@click.option("--bin-dir", default=DEFAULT_BIN_DIR, show_default=True, metavar="DIR")
@click.option("--conf-dir", default=DEFAULT_CONF_DIR, show_default=True, metavar="DIR")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@common_options
@click.pass_context
def doctor(ctx: click.Context, network: str | None, bin_dir: str, conf_dir: str, output: str,
           docker_host: str, state_dir: str) -> None:
    """Check that this node is ready for cni2cnm: one line per check, OK, WARN or FAIL.

    Checks: running as root; the engine answers; its API version (>= 1.40); interface
    naming (API >= 1.48) and MAC addresses on connect (API >= 1.54); the --network exists
    (driver, scope, subnets); the state directory (0700, writable, or creatable); the
    plugin in --bin-dir; valid configs using cni2cnm in --conf-dir (parsed as the plugin
    parses them); and a VERSION call through the installed plugin, as runtimes make it.
    Exits 0 without FAIL, 1 otherwise. -o json prints {"ok": bool, "checks": [{"check",
    "status", "message", "fix"}]}.

    \b
    Example:
      cni2cnm doctor --network pods
    """
    from cni2cnm.ops import doctor as ops

    s = settings(ctx, docker_host, state_dir)
    engine = make_engine(s.docker_host, timeout=10.0)
    try:
        checks = ops.run_checks(engine, s.state_dir, bin_dir, conf_dir, network)
    finally:
        engine.close()
    failed = any(c.status == ops.FAIL for c in checks)
    if output == "json":
        print_json({"ok": not failed, "checks": [c.to_json() for c in checks]})
    else:
        for c in checks:
            fix = f"  -> {c.fix}" if c.fix and c.status != ops.OK else ""
            label = click.style(f"{c.status:<4}", fg=STATUS_COLORS[c.status], bold=True)
            echo(f"{label}  {c.name:<9}  {c.message}{fix}")
    finish(EXIT_FOUND if failed else 0)


# ==== serve =================================================================================

from cni2cnm.daemon.command import serve  # noqa: E402  (kept out of the plugin's start-up path)

cli.add_command(serve)
