"""ADD, CHECK, DEL, GC and STATUS, run in-process exactly the way a runtime runs the plugin.

The CLI builds what a runtime would build -- the CNI_* environment (CNI_ARGS with
IgnoreUnknown=1) and the plugin's network configuration, with `runtimeConfig` for the
capabilities it asks for and the ADD result as `prevResult` for CHECK and DEL -- and hands
them to `cni2cnm.cni.skel.dispatch` with the plugin: the same code path, validation and
store as a runtime's exec of the plugin. The plugin's stdout and exit status come back
unchanged.

Like cnitool, the CLI keeps the ADD result in a small cache (resultcache.py: libcni's format,
so `cni2cnm inspect` reads it as the runtime's view), written by ADD, read by CHECK and DEL,
removed by a successful DEL or GC. Only the cni2cnm entry of a conflist runs: chained
plugins are not executed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cni2cnm import PLUGIN_TYPE, netns
from cni2cnm.engine import Container, EngineAPI, EngineUnavailable
from cni2cnm.ops import OpError, netns_container_id, resultcache
from cni2cnm.ops.files import read_json_object
from cni2cnm.ops.inspect import read_records
from cni2cnm.store import Attachment

DEFAULT_CNI_VERSION = "1.0.0"
GC_STATUS_VERSION = "1.1.0"
CNI_ARGS = "IgnoreUnknown=1"
CNI_PATH = "/opt/cni/bin"


@dataclass(frozen=True)
class Settings:
    """The options every command takes; `*_explicit` when given on the command line."""

    docker_host: str
    state_dir: str
    docker_host_explicit: bool = False
    state_dir_explicit: bool = False


@dataclass
class Outcome:
    command: str
    rc: int
    stdout: str
    notes: list[str] = field(default_factory=list)  # for stderr, one line each

    @property
    def doc(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.stdout)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def error_line(self) -> str | None:
        """The plugin's error object as one line, when it printed one."""
        doc = self.doc
        if self.rc == 0 or doc is None or "code" not in doc:
            return None
        details = f": {doc['details']}" if doc.get("details") else ""
        return f"{self.command} failed with CNI error {doc['code']}: {doc.get('msg', '')}{details}"


# ==== the network configuration ===========================================================


def load_conf_file(path: str) -> dict[str, Any]:
    """The cni2cnm entry of a .conf or .conflist file, as libcni hands it to the plugin
    (a conflist's cniVersion and name copied into the entry)."""
    doc = read_json_object(path)
    if "plugins" in doc:
        plugins = doc["plugins"]
        if not isinstance(plugins, list):
            raise OpError(f"{path}: \"plugins\" must be a list")
        ours = [p for p in plugins if isinstance(p, dict) and p.get("type") == PLUGIN_TYPE]
        if not ours:
            raise OpError(f"{path} has no plugin entry with \"type\": \"{PLUGIN_TYPE}\"")
        conf = dict(ours[0])
        for key in ("cniVersion", "name"):
            if key in doc:
                conf[key] = doc[key]
        if doc.get("disableCheck") is True:
            conf["_disableCheck"] = True
        return conf
    if doc.get("type") != PLUGIN_TYPE:
        raise OpError(f"{path} is not a {PLUGIN_TYPE} config (\"type\" is {doc.get('type')!r})")
    return dict(doc)


def plugin_conf(settings: Settings, network: str | None, conf_file: str | None,
                cni_version: str | None) -> dict[str, Any]:
    """The config the plugin gets on stdin (before runtimeConfig and prevResult)."""
    if conf_file:
        conf = load_conf_file(conf_file)
        if network and conf.get("name") != network:
            raise OpError(f"{conf_file} configures network {conf.get('name')!r}, not "
                          f"{network!r}; drop --network or use another file")
    elif network:
        conf = {"cniVersion": DEFAULT_CNI_VERSION, "name": network, "type": PLUGIN_TYPE}
    else:
        raise OpError("give --network NAME or --conf FILE")
    if cni_version:
        conf["cniVersion"] = cni_version
    if settings.state_dir_explicit or "stateDir" not in conf:
        conf["stateDir"] = settings.state_dir
    if settings.docker_host_explicit:
        conf["dockerHost"] = settings.docker_host
    return conf


def add_runtime_config(conf: dict[str, Any], conf_file: str | None, ips: Sequence[str],
                       mac: str | None, aliases: Sequence[str]) -> None:
    """runtimeConfig as libcni builds it: only for capabilities the config declares. The
    generated config declares what is asked; a config file must already declare it."""
    wanted = {"ips": list(ips) or None, "mac": mac or None, "aliases": list(aliases) or None}
    options = {"ips": "--ip", "mac": "--mac", "aliases": "--alias"}
    caps = conf.get("capabilities")
    if not isinstance(caps, dict):
        caps = {}
    runtime: dict[str, Any] = {}
    for cap, value in wanted.items():
        if value is None:
            continue
        if conf_file and caps.get(cap) is not True:
            raise OpError(f"{options[cap]} needs \"capabilities\": {{\"{cap}\": true}} in the "
                          f"cni2cnm entry of {conf_file} (runtimes send runtimeConfig.{cap} "
                          "only to plugins that declare it)")
        caps[cap] = True
        runtime[cap] = value
    if runtime:
        conf["capabilities"] = caps
        conf["runtimeConfig"] = {**(conf.get("runtimeConfig") or {}), **runtime}


def engine_for_conf(conf: dict[str, Any], environ: Mapping[str, str]) -> EngineAPI:
    """The engine the plugin will use for this config (dockerHost, TLS, timeout). For a
    config the plugin will refuse, the plain DOCKER_HOST: the plugin reports the problem."""
    from cni2cnm.cni.config import parse_netconf
    from cni2cnm.cni.errors import CNIError
    from cni2cnm.engine import EngineSettings, choose_engine
    from cni2cnm.plugin.config import PluginConf
    from cni2cnm.plugin.handlers import engine_settings

    clean = {k: v for k, v in conf.items() if not k.startswith("_")}
    try:
        settings = engine_settings(parse_netconf(clean, PluginConf))
    except CNIError:
        settings = EngineSettings()
    return choose_engine(settings, environ)


# ==== running the plugin ===================================================================


def plugin_environ(settings: Settings, command: str, container_id: str = "",
                   netns_path: str = "", ifname: str = "") -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    environ.update({
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": CNI_ARGS,
        "CNI_PATH": CNI_PATH,
        "DOCKER_HOST": settings.docker_host,
    })
    return environ


def _not_the_failure_line(record: logging.LogRecord) -> bool:
    """skel logs every failure as a warning; the CLI prints the same error itself."""
    return not (record.levelno == logging.WARNING and str(record.msg).startswith("%s failed"))


def dispatch(command: str, conf: dict[str, Any], environ: dict[str, str]) -> Outcome:
    """One plugin operation through skel.dispatch, in this process."""
    from cni2cnm.cni import logs, skel
    from cni2cnm.plugin.handlers import DockerPlugin

    stdin = io.BytesIO(json.dumps({k: v for k, v in conf.items()
                                   if not k.startswith("_")}).encode())
    out = io.StringIO()
    logs.setup()
    skel_log = skel.log
    if _not_the_failure_line not in skel_log.filters:
        skel_log.addFilter(_not_the_failure_line)
    # As in plugin mode: anything printed by accident goes to stderr, never into the result.
    with contextlib.redirect_stdout(sys.stderr):
        rc = skel.dispatch(lambda: DockerPlugin(environ=environ), environ, stdin, out)
    return Outcome(command, rc, out.getvalue())


# ==== the cached ADD result as a prevResult ===============================================


def as_version(result: dict[str, Any], version: str) -> dict[str, Any]:
    """A cached result converted to the config's version, as libcni does for prevResult."""
    from cni2cnm.cni.result import parse_result

    cached_version = result.get("cniVersion")
    if cached_version == version or not isinstance(cached_version, str):
        return result
    return parse_result(result, cached_version).render(version)


# ==== which container ======================================================================


@dataclass(frozen=True)
class Target:
    container_id: str
    netns: str


def _live_netns(c: Container) -> str:
    return netns.of_pid(c.pid) if c.running and c.pid else ""


def resolve_for_add(engine: EngineAPI, ref: str) -> Target:
    if "/" in ref:
        path = os.path.abspath(ref)
        return Target(netns_container_id(path), path)
    c = engine.container(ref)
    if c is None:
        raise OpError(f"no Docker container {ref!r} on {engine.shown}; give a container "
                      "name or ID, or a network namespace path (containing '/')")
    if not c.running or not c.pid:
        raise OpError(f"Docker container {c.name} ({c.short_id}) is "
                      f"{c.status or 'not running'}; start it first")
    return Target(c.id, _live_netns(c))


def resolve_recorded(engine: EngineAPI, ref: str, network: str, ifname: str,
                     state_dir: str) -> Target:
    """CHECK and DEL: the attachment the store recorded for this container (so a container
    attached through its namespace path is found by its name), else what the engine says."""
    if "/" in ref:
        path = os.path.abspath(ref)
        return Target(netns_container_id(path), path)
    records = [a for a in read_records(state_dir) if a.network == network and a.ifname == ifname]
    c: Container | None = None
    down: EngineUnavailable | None = None
    try:
        c = engine.container(ref)
    except EngineUnavailable as e:
        down = e
    if c is not None:
        found = [a for a in records if c.id in (a.docker_id, a.container_id)]
    else:
        found = [a for a in records if _names(a, ref)]
    if len(found) > 1:
        listed = ", ".join(a.container_id for a in found)
        raise OpError(f"{ref!r} matches {len(found)} recorded attachments of network "
                      f"{network} ({listed}); give the CNI container ID")
    if found:
        return Target(found[0].container_id, _recorded_netns(found[0], c))
    if c is not None:
        return Target(c.id, _live_netns(c))
    if down is not None:
        raise down
    raise OpError(f"no Docker container {ref!r} on {engine.shown} and no attachment of it "
                  f"to network {network} ({ifname}) recorded in {state_dir}")


def _names(a: Attachment, ref: str) -> bool:
    return bool(a.container_id == ref or a.container_id.startswith(ref)
                or a.docker_name == ref or (a.docker_id and a.docker_id.startswith(ref)))


def _recorded_netns(a: Attachment, c: Container | None) -> str:
    """The path ADD got (CHECK compares it with prevResult's sandbox) while it is still the
    namespace; else the running container's; else the recorded one (DEL copes)."""
    if a.netns and netns.is_namespace(a.netns):
        return a.netns
    if c is not None and _live_netns(c):
        return _live_netns(c)
    return a.netns


# ==== the operations =======================================================================


def attachment_op(command: str, settings: Settings, ref: str, *, network: str | None,
                  conf_file: str | None, ifname: str, cni_version: str | None,
                  ips: Sequence[str] = (), mac: str | None = None,
                  aliases: Sequence[str] = ()) -> Outcome:
    """ADD, CHECK or DEL of one container."""
    conf = plugin_conf(settings, network, conf_file, cni_version)
    add_runtime_config(conf, conf_file, ips, mac, aliases)
    state_dir = str(conf["stateDir"])
    name = str(conf.get("name") or "")
    environ = plugin_environ(settings, command)
    engine = engine_for_conf(conf, environ)
    try:
        if command == "ADD":
            target = resolve_for_add(engine, ref)
        else:
            target = resolve_recorded(engine, ref, name, ifname, state_dir)
    finally:
        engine.close()
    path = resultcache.cli_path(state_dir, name, target.container_id, ifname)
    notes = []
    if command == "CHECK" and conf.get("_disableCheck"):
        return Outcome(command, 0, "", [f"CHECK skipped: {conf_file} sets disableCheck"])
    if command in ("CHECK", "DEL"):
        prev = resultcache.cached_result(path)
        if prev is not None:
            conf["prevResult"] = as_version(prev, conf["cniVersion"])
        elif command == "CHECK":
            notes.append(f"no cached ADD result ({path}): CHECK needs the result of an ADD "
                         "made with `cni2cnm add`")
    environ = plugin_environ(settings, command, target.container_id, target.netns, ifname)
    outcome = dispatch(command, conf, environ)
    outcome.notes[:0] = notes
    if outcome.rc == 0 and command == "ADD" and outcome.doc is not None:
        resultcache.write_cli_result(path, conf, target.container_id, ifname, target.netns,
                                     CNI_ARGS, outcome.doc)
    elif outcome.rc == 0 and command == "DEL":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return outcome


def parse_keep(values: Sequence[str]) -> list[dict[str, str]]:
    """--keep CONTAINERID/IFNAME (IFNAME defaults to eth0) as cni.dev/valid-attachments."""
    out = []
    for v in values:
        cid, _, ifname = v.partition("/")
        if not cid:
            raise OpError(f"--keep {v!r}: expected CONTAINERID/IFNAME")
        out.append({"containerID": cid, "ifname": ifname or "eth0"})
    return out


def network_op(command: str, settings: Settings, *, network: str | None,
               conf_file: str | None, keep: Sequence[dict[str, str]] = ()) -> Outcome:
    """GC or STATUS of one network, with cniVersion 1.1.0."""
    conf = plugin_conf(settings, network, conf_file, GC_STATUS_VERSION)
    if command == "GC":
        conf["cni.dev/valid-attachments"] = list(keep)
    outcome = dispatch(command, conf, plugin_environ(settings, command))
    if command == "GC" and outcome.rc == 0:
        state_dir = str(conf["stateDir"])
        resultcache.prune_cli_results(state_dir, str(conf.get("name") or ""),
                                      (a.key for a in read_records(state_dir)))
    return outcome
