"""The CNI result of an ADD: the interface(s), addresses, routes and DNS, extending a
prevResult when the plugin is chained."""

from __future__ import annotations

import ipaddress

from cni2cnm import netns
from cni2cnm.cni.config import DNS
from cni2cnm.cni.env import CNIEnv
from cni2cnm.cni.result import Interface, IPConfig, Result, Route
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.context import Attached


def build_result(prev: Result | None, env: CNIEnv, conf: PluginConf, attached: Attached) -> Result:
    result = prev.model_copy(deep=True) if prev is not None else Result()
    ep, link = attached.endpoint, attached.link
    index = result.add_interface(
        Interface(name=link.name, mac=link.mac, mtu=link.mtu or None, sandbox=env.netns)
    )
    for addr in ep.addresses:
        version = ipaddress.ip_interface(addr).version
        gateway = ep.gateway if version == 4 else ep.ipv6_gateway
        result.ips.append(IPConfig(address=addr, gateway=gateway, interface=index))
    add_routes(result, attached.routes)
    for extra, routes in attached.extras:
        i = result.add_interface(Interface(name=extra.name, mac=extra.mac,
                                           mtu=extra.mtu or None, sandbox=env.netns))
        for addr in extra.addresses:
            version = ipaddress.ip_interface(addr).version
            gw = next((r.gw for r in routes if r.gw and r.dst in ("0.0.0.0/0", "::/0")
                       and ipaddress.ip_address(r.gw).version == version), None)
            result.ips.append(IPConfig(address=addr, gateway=gw, interface=i))
        add_routes(result, routes)
    dns = result_dns(conf)
    if dns is not None and not result.dns.model_dump(exclude_none=True):
        result.dns = dns
    return result


def add_routes(result: Result, routes: list[netns.RouteEntry]) -> None:
    for r in routes:
        result.routes.append(Route(dst=r.dst, gw=r.gw, mtu=r.mtu, advmss=r.advmss,
                                   priority=r.priority, table=r.table, scope=r.scope))


def result_dns(conf: PluginConf) -> DNS | None:
    rc = conf.runtimeConfig
    if rc is not None and rc.dns is not None and conf.capability("dns"):
        return DNS(nameservers=rc.dns.servers, search=rc.dns.searches, options=rc.dns.options)
    return conf.dns
