"""The commands about attachments: inspect, add, check, del, gc, status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

import click

from cni2cnm.cli.base import (
    F,
    Failure,
    cli,
    common_options,
    echo,
    finish,
    make_engine,
    print_json,
    print_table,
    settings,
)
from cni2cnm.cni.version import SUPPORTED_VERSIONS
from cni2cnm.ops import EXIT_ERROR
from cni2cnm.ops.resultcache import default_cache_dirs

log = logging.getLogger("cni2cnm.cli")

*_LIBCNI_DIRS, _CLI_DIR = default_cache_dirs("<state-dir>")
DEFAULT_CACHE_DIRS_HELP = f"{', '.join(_LIBCNI_DIRS)} and {_CLI_DIR}"


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

    DRIFT names what disagrees (an interrupted ADD, an unreachable engine, a network,
    container or namespace gone, addresses that differ, the runtime's cache holding
    something else); `cni2cnm inspect --schema` lists every kind with its meaning.

    -o json prints a list of objects, every key always present; the keys are
    listed by `cni2cnm inspect --schema` too.

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
    dirs = list(cache_dirs) or default_cache_dirs(s.state_dir)
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
        # click's decorators, common_options and pass_context: each takes the command
        # function and returns it decorated (pass_context changes its signature)
        opts: list[Callable[[Any], Any]] = [
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
