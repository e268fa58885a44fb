"""`cni2cnm conflist`: a ready network configuration list for an existing Docker network.

    {
      "cniVersion": "1.0.0",
      "name": "<name, default the Docker network's name>",
      "plugins": [
        {"type": "cni2cnm", "network": "<Docker network name>",
         "capabilities": {"ips": true, "mac": true, "aliases": true},
         "args": {"cni2cnm": {"networkId": ..., "driver": ..., "scope": ..., "internal": ...,
                              "attachable": ..., "ipv6": ...,
                              "subnets": [{"subnet": ..., "gateway": ...}]}}},
        ... one minimal entry per chained plugin
      ]
    }

`args.cni2cnm` is a note of what the engine said when the file was made (the spec lets
`args` carry arbitrary data; the plugin reads only `args.cni`). `dockerHost`, `stateDir`,
`daemonSocket` and `daemon` are written only when they differ from the plugin's defaults (an
empty `daemonSocket`: no daemon). The result is parsed back through the protocol layer before
it is printed or written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cni2cnm import PLUGIN_TYPE
from cni2cnm.cni.config import NetConf, parse_netconf
from cni2cnm.cni.errors import CNIError
from cni2cnm.cni.names import NAME_RE
from cni2cnm.daemon.wire import DEFAULT_SOCKET, MODE_AUTO
from cni2cnm.engine import DEFAULT_HOST, Engine, Network
from cni2cnm.ops import OpError
from cni2cnm.plugin.config import DEFAULT_STATE_DIR, DaemonMode, PluginConf

# Chained plugins that take a capability: their minimal entries declare it.
CHAIN_ENTRIES: dict[str, dict[str, Any]] = {
    "tuning": {},
    "portmap": {"capabilities": {"portMappings": True}},
    "bandwidth": {"capabilities": {"bandwidth": True}},
}


def parse_chain(values: Sequence[str]) -> list[str]:
    """--chain tuning,portmap (repeatable) as a list of plugin types, in order."""
    out: list[str] = []
    for v in values:
        for name in (p.strip() for p in v.split(",")):
            if not name:
                continue
            if not NAME_RE.fullmatch(name):
                raise OpError(f"--chain: {name!r} is not a plugin type (a file name in the CNI "
                              "bin dir)")
            if name == PLUGIN_TYPE:
                raise OpError("--chain: cni2cnm is always the first plugin; do not list it")
            out.append(name)
    return out


def engine_note(network: Network) -> dict[str, Any]:
    return {
        "networkId": network.id,
        "driver": network.driver,
        "scope": network.scope,
        "internal": network.internal,
        "attachable": network.attachable,
        "ipv6": network.ipv6,
        "subnets": [{"subnet": s.subnet, **({"gateway": s.gateway} if s.gateway else {})}
                    for s in network.subnets if s.subnet],
    }


def build(network: Network, *, name: str | None = None, cni_version: str = "1.0.0",
          chain: Sequence[str] = (), docker_host: str = DEFAULT_HOST,
          state_dir: str = DEFAULT_STATE_DIR, daemon_socket: str = DEFAULT_SOCKET,
          daemon: DaemonMode = MODE_AUTO) -> dict[str, Any]:
    name = name or network.name
    caps = {"ips": True, "mac": True, "aliases": True}
    if "portmap" in chain:
        caps["portMappings"] = True
    entry: dict[str, Any] = {"type": PLUGIN_TYPE, "network": network.name}
    if docker_host != DEFAULT_HOST:
        entry["dockerHost"] = docker_host
    if state_dir != DEFAULT_STATE_DIR:
        entry["stateDir"] = state_dir
    if daemon_socket != DEFAULT_SOCKET:
        entry["daemonSocket"] = daemon_socket
    if daemon != MODE_AUTO:
        entry["daemon"] = daemon
    entry["capabilities"] = caps
    entry["args"] = {PLUGIN_TYPE: engine_note(network)}
    plugins = [entry] + [{"type": t, **json.loads(json.dumps(CHAIN_ENTRIES.get(t, {})))}
                         for t in chain]
    doc = {"cniVersion": cni_version, "name": name, "plugins": plugins}
    validate(doc)
    return doc


def validate(doc: dict[str, Any], source: str = "the conflist") -> list[Any]:
    """Parse every plugin entry through the protocol layer, as libcni hands it to a plugin
    (cniVersion and name injected). Returns the parsed entries; OpError when one is invalid."""
    name = doc.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise OpError(f"{source}: network name {name!r} must start with a letter or digit and "
                      "contain only letters, digits, '_', '.' and '-'")
    plugins = doc.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise OpError(f"{source}: \"plugins\" must be a non-empty list")
    parsed = []
    for i, p in enumerate(plugins):
        if not isinstance(p, dict):
            raise OpError(f"{source}: plugins[{i}] is not an object")
        try:
            model = PluginConf if p.get("type") == PLUGIN_TYPE else NetConf
            parsed.append(parse_netconf({**p, "cniVersion": doc.get("cniVersion"),
                                         "name": name}, model))
        except CNIError as e:
            raise OpError(f"{source}: plugins[{i}] ({p.get('type', '?')}): {e}") from None
    return parsed


def for_network(engine: Engine, ref: str, **kw: Any) -> dict[str, Any]:
    network = engine.network(ref)
    if network is None:
        raise OpError(f"Docker network {ref!r} does not exist on {engine.shown}; create it "
                      "with `docker network create` first")
    return build(network, **kw)


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"
