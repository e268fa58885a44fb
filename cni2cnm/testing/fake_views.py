"""What the fake engine shows: its state as the typed models the real adapter builds from
dockerd's JSON (inspect of a container, inspect of a network), and the interfaces a
connect makes inside the container's namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cni2cnm.engine import Container, Endpoint, Member, Network, Subnet
from cni2cnm.netns import RouteEntry
from cni2cnm.testing.fake_netns import FakeNamespaces
from cni2cnm.testing.fake_state import FakeContainer, FakeEndpoint, FakeNetwork

GWBRIDGE_SUBNET = "172.18.0"
MAIN = 254


def to_container(c: FakeContainer, networks: dict[str, FakeNetwork]) -> Container:
    endpoints = {}
    for name, ep in c.endpoints.items():
        net = networks.get(ep.network_id)
        shown = bool(c.running and ep.endpoint_id and net is not None)
        gw = net is not None and net.reported_gateway and shown
        endpoints[name] = Endpoint(
            network_name=name, network_id=ep.network_id, endpoint_id=ep.endpoint_id,
            mac=ep.mac if shown and net is not None and net.reports_mac else "",
            ipv4=ep.ipv4 if shown else None, ipv6=ep.ipv6 if shown else None,
            gateway=net.gateway if gw and ep.ipv4 and net is not None else None,
            ipv6_gateway=net.gateway6 if gw and ep.ipv6 and net is not None else None,
            aliases=tuple(ep.config.get("aliases") or ()),
        )
    return Container(id=c.id, name=c.name, running=c.running, status=c.state, pid=c.pid,
                     network_mode=c.network_mode, endpoints=endpoints, exit=c.exit,
                     labels=dict(c.labels))


def to_network(net: FakeNetwork, members: Iterable[FakeContainer]) -> Network:
    subnets = tuple(Subnet(s, g) for s, g in ((net.subnet, net.gateway),
                                               (net.subnet6, net.gateway6)) if s)
    listed = []
    for c in members:
        ep = c.endpoints[net.name]
        listed.append(Member(container_id=c.id, name=c.name, endpoint_id=ep.endpoint_id,
                             mac=ep.mac if net.reports_mac else "", ipv4=ep.ipv4,
                             ipv6=ep.ipv6))
    for name, ep in net.orphans.items():  # dockerd lists them under "ep-<endpoint id>"
        listed.append(Member(container_id=f"ep-{ep.endpoint_id}", name=name,
                             endpoint_id=ep.endpoint_id, mac=ep.mac, ipv4=ep.ipv4,
                             ipv6=ep.ipv6))
    return Network(id=net.id, name=net.name, driver=net.driver, scope=net.scope,
                   internal=net.internal, attachable=net.attachable, ipv6=bool(net.subnet6),
                   subnets=subnets, members=tuple(listed), options=dict(net.options))


def make_interface(c: FakeContainer, net: FakeNetwork, ep: FakeEndpoint,
                   new_mac: Callable[[], str]) -> None:
    """The endpoint's interface in the container's namespace, with the default route via
    the gateway unless the network is internal or the namespace has one already."""
    ns = c.ns
    assert ns is not None
    addresses = tuple(a for a in (ep.ipv4, ep.ipv6) if a)
    link = ns.add_link(ep.ifname, mac=ep.mac, mtu=1450 if net.driver == "overlay" else 1500,
                       addresses=addresses)
    routes = []
    if not net.internal and net.gateway_service and net.driver != "overlay":
        if ep.ipv4 and net.gateway and not ns.has_default(4):
            routes.append(RouteEntry(dst="0.0.0.0/0", gw=net.gateway, oif=link.index,
                                     table=MAIN, scope=0))
        if ep.ipv6 and net.gateway6 and not ns.has_default(6):
            routes.append(RouteEntry(dst="::/0", gw=net.gateway6, oif=link.index,
                                     priority=1024, table=MAIN, scope=0))
    ns.routes.extend(routes)
    if net.driver == "overlay" and not net.internal and not c.gwbridge_mac:
        # docker_gwbridge: a second interface, not listed in Networks, with the default route
        c.gwbridge_mac = new_mac()
        gw = ns.add_link(f"eth{c.next_eth}", mac=c.gwbridge_mac,
                         addresses=(f"{GWBRIDGE_SUBNET}.{2 + c.pid % 250}/16",))
        c.next_eth += 1
        if not ns.has_default(4):
            ns.routes.append(RouteEntry(dst="0.0.0.0/0", gw=f"{GWBRIDGE_SUBNET}.1",
                                        oif=gw.index, table=MAIN, scope=0))


def remove_interface(spaces: FakeNamespaces, mac: str) -> None:
    """A veth goes with its host end, in whatever namespace it is now."""
    if not mac:
        return
    for ns in {id(n): n for n in spaces.paths.values()}.values():
        for link in list(ns.links.values()):
            if link.mac == mac:
                ns.remove_link(link.index)
