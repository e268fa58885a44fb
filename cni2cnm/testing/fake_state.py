"""What the fake engine keeps: networks with their address allocation (dockerd's IPAM:
the next free address, the gateway first), endpoints and containers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from cni2cnm.engine import AddressInUse, ContainerExit, Deadline, InvalidRequest
from cni2cnm.testing.fake_netns import FakeNamespace

BUILTIN_DRIVERS = ("bridge", "macvlan", "ipvlan", "overlay")

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class FakeNetwork:
    id: str
    name: str
    driver: str = "bridge"
    scope: str = "local"
    internal: bool = False
    attachable: bool = False
    subnet: str | None = None
    gateway: str | None = None
    subnet6: str | None = None
    gateway6: str | None = None
    user_subnets: bool = True  # created with --subnet (static addresses allowed)
    reports_mac: bool = True  # remote drivers can leave MacAddress empty
    gateway_service: bool = True  # remote drivers can run without a gateway
    options: dict[str, str] = field(default_factory=dict)
    used: dict[str, str] = field(default_factory=dict)  # address -> container ID
    # endpoints whose container dockerd lost (removed while its endpoint stayed), by the
    # container's name: only a force-disconnect by that name removes them
    orphans: dict[str, FakeEndpoint] = field(default_factory=dict)

    @classmethod
    def make(cls, id: str, name: str, *, subnet: str | None, gateway: str | None,
             subnet6: str | None, gateway6: str | None, **kw: Any) -> FakeNetwork:
        def first_host(cidr: str | None) -> str | None:
            return str(next(ipaddress.ip_network(cidr).hosts())) if cidr else None

        return cls(id=id, name=name, subnet=subnet, gateway=gateway or first_host(subnet),
                   subnet6=subnet6, gateway6=gateway6 or first_host(subnet6), **kw)

    @property
    def builtin(self) -> bool:
        return self.driver in BUILTIN_DRIVERS

    @property
    def reported_gateway(self) -> bool:
        """Inspect shows the gateway (an overlay's is empty: docker_gwbridge routes)."""
        return self.gateway_service and self.driver != "overlay"

    def release(self, *cidrs: str | None) -> None:
        for cidr in cidrs:
            if cidr:
                self.used.pop(str(ipaddress.ip_interface(cidr).ip), None)


def no_static_address(net: FakeNetwork) -> str:
    """dockerd's words for a static address on a network that takes none."""
    if net.name == "bridge":
        return "user specified IP address is supported on user defined networks only"
    return ("user specified IP address is supported only when connecting to networks with user "
            "configured subnets")


def invalid_settings(net: FakeNetwork, ipv4: str | None, ipv6: str | None) -> str:
    """What an engine from API_CONNECT_VALIDATES_IP finds wrong with an endpoint's addresses
    before it connects ("" if nothing), in its words."""
    problems = []
    if (ipv4 or ipv6) and not net.user_subnets:
        problems.append(no_static_address(net))
    for wanted, subnet in ((ipv4, net.subnet), (ipv6, net.subnet6)):
        if wanted and not _within(wanted, subnet):
            problems.append(f"no configured subnet or ip-range contain the IP address {wanted}")
    if len(problems) > 1:
        return "invalid endpoint settings:\n" + "\n".join(f"* {p}" for p in problems)
    return f"invalid endpoint settings:\n{problems[0]}" if problems else ""


def _within(address: str, subnet: str | None) -> bool:
    """`address` is in `subnet`, or is no address at all (refused as such when allocated)."""
    try:
        return subnet is not None and ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    except ValueError:
        return True


def allocate(net: FakeNetwork, owner: str, ipv4: str | None, ipv6: str | None
             ) -> tuple[str | None, str | None]:
    """Addresses (CIDR) for an endpoint, static or the next free; all or nothing."""
    v4 = _pick(net, net.subnet, ipv4, 4) if net.subnet else None
    v6 = _pick(net, net.subnet6, ipv6, 6) if net.subnet6 else None
    if ipv6 and not net.subnet6:
        raise InvalidRequest(no_static_address(net), 400)
    for cidr in (v4, v6):
        if cidr:
            net.used[str(ipaddress.ip_interface(cidr).ip)] = owner
    return v4, v6


def _pick(net: FakeNetwork, subnet: str | None, wanted: str | None, version: int) -> str:
    assert subnet is not None
    network: IPNet = ipaddress.ip_network(subnet)
    gateway = net.gateway if version == 4 else net.gateway6
    if wanted:
        if not net.user_subnets:
            raise InvalidRequest(no_static_address(net), 400)
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError:
            raise InvalidRequest(f"invalid IPv{version} address: {wanted}", 400) from None
        if addr not in network:
            raise InvalidRequest(f"Invalid address {wanted}: It does not belong to any of this "
                                 "network's subnets", 500)
        if str(addr) in net.used or str(addr) == gateway:
            if net.driver == "overlay":  # the swarm allocator times out instead
                raise Deadline("context deadline exceeded", 500)
            raise AddressInUse("Address already in use", 403)
        return f"{addr}/{network.prefixlen}"
    for host in network.hosts():
        if str(host) != gateway and str(host) not in net.used:
            return f"{host}/{network.prefixlen}"
    raise InvalidRequest(f"no available IPv{version} addresses on this network's address "
                         f"pools: {net.name} ({net.id[:12]})", 500)


@dataclass
class FakeEndpoint:
    network_id: str
    config: dict[str, Any] = field(default_factory=dict)  # what connect/create asked for
    endpoint_id: str = ""  # empty: configured only (not started), or 20.10's stale entry
    mac: str = ""
    ipv4: str | None = None
    ipv6: str | None = None
    ifname: str = ""


@dataclass
class FakeContainer:
    id: str
    name: str
    network_mode: str
    labels: dict[str, str]
    state: str = "created"
    pid: int = 0
    exit: ContainerExit | None = None
    endpoints: dict[str, FakeEndpoint] = field(default_factory=dict)  # by network name
    next_eth: int = 0
    ns: FakeNamespace | None = None
    gwbridge_mac: str = ""  # the docker_gwbridge interface overlay endpoints bring
    limits: dict[str, int] = field(default_factory=dict)  # a sandbox's pids and memory

    @property
    def running(self) -> bool:
        return self.state == "running"
