"""The commands about the node: version, conflist, install, doctor."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, get_args

import click

from cni2cnm import __version__
from cni2cnm.cli import base
from cni2cnm.cli.base import cli
from cni2cnm.cni.version import SUPPORTED_VERSIONS
from cni2cnm.daemon.wire import DEFAULT_SOCKET, MODE_AUTO
from cni2cnm.ops import EXIT_FOUND
from cni2cnm.ops.install import DEFAULT_BIN_DIR, DEFAULT_CONF_DIR
from cni2cnm.plugin.config import DaemonMode

log = logging.getLogger("cni2cnm.cli")


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
        base.echo(json.dumps({"version": __version__, "cniVersions": list(SUPPORTED_VERSIONS),
                         "daemon": daemon.to_json() if daemon else None}))
    else:
        base.echo(f"cni2cnm {__version__}")
        base.echo(f"CNI spec versions: {', '.join(SUPPORTED_VERSIONS)}")
        base.echo(f"daemon: {daemon.describe() if daemon else 'disabled (empty socket path)'}")



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
@base.common_options
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

    s = base.settings(ctx, docker_host, state_dir)
    engine = base.make_engine(s.docker_host)
    try:
        doc = ops.for_network(engine, docker_network, name=name, cni_version=cni_version,
                              chain=ops.parse_chain(chain), docker_host=s.docker_host,
                              state_dir=s.state_dir)
    finally:
        engine.close()
    text = ops.render(doc)
    if out_file == "-":
        base.echo(text, nl=False)
    else:
        atomic_write(out_file, text, 0o644)
        base.echo(f"cni2cnm: wrote {out_file}", err=True)


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
@click.option("--shim", default="auto", show_default=True, metavar="PATH|auto|none",
              help="place this static shim (built by scripts/shim.sh) as the plugin file and "
                   "the Python plugin beside it as cni2cnm-python: requests skip Python's "
                   "start-up (auto: the shim this installation carries in cni2cnm/_shim/, "
                   "if any; none: no shim)")
@click.option("--shim-only", is_flag=True,
              help="place the shim without the Python plugin file beside it (a node served "
                   "by a daemon it cannot run itself, e.g. a DaemonSet's pod)")
@click.option("--cni-version", default="1.0.0", show_default=True,
              help="the conflist's cniVersion (0.4.0 for runtimes whose libcni knows no 1.0, "
                   "e.g. kubelet 1.20's dockershim)")
@click.option("--daemon-mode", type=click.Choice(get_args(DaemonMode)), default=MODE_AUTO,
              show_default=True,
              help="the conflist's \"daemon\" key (manual: use the daemon, never start one)")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@base.common_options
@click.pass_context
def install(ctx: click.Context, bin_dir: str, conf_dir: str, network: str | None, force: bool,
            uninstall: bool, systemd: str, daemon_socket: str | None, shim: str,
            shim_only: bool, cni_version: str, daemon_mode: str,
            output: str, docker_host: str, state_dir: str) -> None:
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

    The static shim: build it with `scripts/shim.sh` (gcc, static, from the source tree:
    it writes cni2cnm/_shim/cni2cnm-shim, which install then places by default) or give it
    with --shim PATH. The shim is then <bin-dir>/cni2cnm and the script above is
    <bin-dir>/cni2cnm-python; the shim forwards requests to the daemon in about a
    millisecond and hands everything else to the script.

    \b
    Examples:
      cni2cnm install --network pods
      cni2cnm install --shim /usr/local/lib/cni2cnm/cni2cnm-shim
      cni2cnm install --uninstall
    """
    from cni2cnm.ops import install as ops

    s = base.settings(ctx, docker_host, state_dir)
    daemon_socket = _daemon_socket(daemon_socket)
    if uninstall:
        actions = _stop_daemon(daemon_socket, stale_only=False)
        actions += ops.uninstall(s.state_dir, bin_dir, conf_dir, network)
        actions += _uninstall_units(s.state_dir)
    else:
        planned = ops.plugin_files(bin_dir, _shim(shim), python=not shim_only)
        if network:
            from cni2cnm.ops import conflist as cl

            engine = base.make_engine(s.docker_host)
            try:
                doc = cl.for_network(engine, network, docker_host=s.docker_host,
                                     state_dir=s.state_dir, daemon_socket=daemon_socket,
                                     daemon=daemon_mode, cni_version=cni_version)
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
        base.print_json([a.to_json() for a in actions])
    else:
        colors = {ops.KEPT: "yellow", ops.REMOVED: "green", ops.INSTALLED: "green",
                  ops.REPLACED: "yellow"}
        for a in actions:
            note = f" ({a.note})" if a.note else ""
            base.echo(f"{click.style(a.action, fg=colors.get(a.action))} {a.path}{note}")
        if not actions:
            base.echo("nothing to uninstall", err=True)
    base.finish(EXIT_FOUND if any(a.action == ops.KEPT for a in actions) else 0)


def _daemon_socket(given: str | None) -> str:
    """--daemon-socket, else $CNI2CNM_DAEMON_SOCKET (empty too: no daemon), else the
    default, as the plugin finds it."""
    if given is not None:
        return given
    return os.environ.get("CNI2CNM_DAEMON_SOCKET", DEFAULT_SOCKET)


def _shim(given: str) -> str | None:
    """--shim: a path, "none", or "auto" (the shim the package carries, if any)."""
    if given == "auto":
        from cni2cnm.ops import install as ops

        return ops.packaged_shim()
    return None if given == "none" else given


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
@base.common_options
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

    s = base.settings(ctx, docker_host, state_dir)
    engine = base.make_engine(s.docker_host, timeout=10.0)
    try:
        checks = ops.run_checks(engine, s.state_dir, bin_dir, conf_dir, network)
    finally:
        engine.close()
    failed = any(c.status == ops.FAIL for c in checks)
    if output == "json":
        base.print_json({"ok": not failed, "checks": [c.to_json() for c in checks]})
    else:
        for c in checks:
            fix = f"  -> {c.fix}" if c.fix and c.status != ops.OK else ""
            label = click.style(f"{c.status:<4}", fg=base.STATUS_COLORS[c.status], bold=True)
            base.echo(f"{label}  {c.name:<9}  {c.message}{fix}")
    base.finish(EXIT_FOUND if failed else 0)
