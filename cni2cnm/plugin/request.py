"""What the runtime asks for an endpoint: addresses, MAC, aliases, driver options.

Precedence (CONVENTIONS.md): runtimeConfig capability args (when the config
declares the capability) over `args.cni`, over CNI_ARGS.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field

from cni2cnm.cni.env import CNIEnv
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.plugin.config import PluginConf

log = logging.getLogger("cni2cnm.request")

MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


@dataclass(frozen=True)
class EndpointRequest:
    ipv4: str | None = None
    ipv6: str | None = None
    mac: str | None = None
    aliases: tuple[str, ...] = ()
    driver_opts: dict[str, str] = field(default_factory=dict)


def endpoint_request(env: CNIEnv, conf: PluginConf) -> EndpointRequest:
    ipv4, ipv6 = _addresses(_requested_ips(env, conf))
    return EndpointRequest(
        ipv4=ipv4,
        ipv6=ipv6,
        mac=_requested_mac(env, conf),
        aliases=_aliases(conf),
        driver_opts=dict(conf.driverOpts),
    )


def _runtime(conf: PluginConf, capability: str) -> object | None:
    rc = conf.runtimeConfig
    value: object = getattr(rc, capability, None) if rc is not None else None
    if value is None:
        return None
    if not conf.capability(capability):
        log.info("ignoring runtimeConfig.%s: the config does not declare that capability",
                 capability)
        return None
    return value


def _args_cni(conf: PluginConf, key: str) -> object | None:
    cni = (conf.args or {}).get("cni")
    return cni.get(key) if isinstance(cni, dict) else None


def _requested_ips(env: CNIEnv, conf: PluginConf) -> tuple[str, list[str]]:
    rc = _runtime(conf, "ips")
    if rc:
        return "runtimeConfig.ips", list(rc)  # type: ignore[call-overload]
    args = _args_cni(conf, "ips")
    if args is not None:
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise CNIError(Code.INVALID_CONFIG, "invalid args.cni.ips",
                           "args.cni.ips must be a list of IP address strings")
        return "args.cni.ips", args
    raw = env.args.get("IP", "")
    return "CNI_ARGS IP", [p for p in raw.split(",") if p]


def _addresses(source_and_ips: tuple[str, list[str]]) -> tuple[str | None, str | None]:
    source, ips = source_and_ips
    v4: str | None = None
    v6: str | None = None
    for text in ips:
        try:
            addr = ipaddress.ip_interface(text.strip()).ip
        except ValueError:
            raise CNIError(Code.INVALID_CONFIG, "invalid IP address requested",
                           f"{source}: {text!r} is not an IP address") from None
        if addr.version == 4:
            if v4 is not None:
                raise CNIError(Code.INVALID_CONFIG, "too many IPv4 addresses requested",
                               f"{source}: a Docker endpoint takes one IPv4 address, got "
                               f"{v4} and {addr}")
            v4 = str(addr)
        else:
            if v6 is not None:
                raise CNIError(Code.INVALID_CONFIG, "too many IPv6 addresses requested",
                               f"{source}: a Docker endpoint takes one IPv6 address, got "
                               f"{v6} and {addr}")
            v6 = str(addr)
    return v4, v6


def _requested_mac(env: CNIEnv, conf: PluginConf) -> str | None:
    for source, value in (
        ("runtimeConfig.mac", _runtime(conf, "mac")),
        ("args.cni.mac", _args_cni(conf, "mac")),
        ("CNI_ARGS MAC", env.args.get("MAC") or None),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or not MAC_RE.fullmatch(value):
            raise CNIError(Code.INVALID_CONFIG, "invalid MAC address requested",
                           f"{source}: {value!r} is not a MAC address like 02:42:0a:00:00:05")
        return value.lower()
    return None


def _aliases(conf: PluginConf) -> tuple[str, ...]:
    extra = _runtime(conf, "aliases") or []
    out: list[str] = []
    for a in [*conf.aliases, *extra]:  # type: ignore[misc]
        if a not in out:
            out.append(a)
    return tuple(out)
