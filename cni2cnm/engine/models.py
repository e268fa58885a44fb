"""Typed views of what dockerd reports: containers, endpoints, networks.

Built from the API's JSON in client.py; nothing past the engine adapter reads raw JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "CONTAINER_NAME",
    "DEFAULT_HOST",
    "DEFAULT_TIMEOUT",
    "IFNAME_OPTION",
    "Container",
    "ContainerExit",
    "Endpoint",
    "Labelled",
    "Member",
    "Network",
    "SandboxSpec",
    "Subnet",
    "TLSSettings",
]

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT = 45.0  # seconds per engine call
IFNAME_OPTION = "com.docker.network.endpoint.ifname"
# The names dockerd accepts for a container (its RestrictedNameChars), "/" prefix optional.
CONTAINER_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+", re.ASCII)


@dataclass(frozen=True)
class TLSSettings:
    """How to reach a tcp:// engine: PEM files of the CA, the client certificate and key."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True


class _Addressed:
    """An endpoint's addresses: one IPv4 and one IPv6 at most, both CIDR."""

    ipv4: str | None
    ipv6: str | None

    @property
    def addresses(self) -> list[str]:
        return [a for a in (self.ipv4, self.ipv6) if a]


@dataclass(frozen=True)
class Endpoint(_Addressed):
    network_name: str
    network_id: str
    endpoint_id: str
    mac: str
    ipv4: str | None  # CIDR
    ipv6: str | None  # CIDR
    gateway: str | None
    ipv6_gateway: str | None
    aliases: tuple[str, ...] = ()

    @property
    def attached(self) -> bool:
        """Docker 20.10 leaves entries with an empty EndpointID after a failed connect."""
        return bool(self.endpoint_id)


@dataclass(frozen=True)
class ContainerExit:
    """How a container that stopped ended."""

    exit_code: int
    error: str = ""
    oom_killed: bool = False


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    running: bool
    status: str
    pid: int
    network_mode: str
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by network name
    exit: ContainerExit | None = None  # set once it has stopped
    labels: dict[str, str] = field(default_factory=dict)

    def endpoint_in(self, network_id: str) -> Endpoint | None:
        for ep in self.endpoints.values():
            if ep.network_id == network_id:
                return ep
        return None

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class Subnet:
    subnet: str
    gateway: str | None


@dataclass(frozen=True)
class Member(_Addressed):
    """One endpoint in a network's member list (its container, name and endpoint)."""

    container_id: str
    name: str
    endpoint_id: str
    mac: str
    ipv4: str | None
    ipv6: str | None


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    scope: str
    internal: bool
    attachable: bool
    ipv6: bool
    subnets: tuple[Subnet, ...]
    members: tuple[Member, ...] = ()
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def not_yet_visible(cls, ref: str) -> Network:
        """A swarm network a worker cannot inspect before its first local attachment:
        known by name only until a connect makes it visible."""
        return cls(id="", name=ref, driver="", scope="swarm", internal=False, attachable=True,
                   ipv6=False, subnets=())

    @property
    def ref(self) -> str:
        return self.id or self.name


@dataclass(frozen=True)
class Labelled:
    """A container found by its labels (listing, not inspect)."""

    id: str
    name: str
    labels: dict[str, str]
    state: str


@dataclass(frozen=True)
class SandboxSpec:
    """A proxy sandbox container: its only network is `network`, with this endpoint."""

    name: str
    image: str
    network: str
    labels: dict[str, str]
    ipv4: str | None = None
    ipv6: str | None = None
    aliases: tuple[str, ...] = ()
    mac: str | None = None
    driver_opts: dict[str, str] = field(default_factory=dict)
    pids_limit: int = 0  # processes in the container at most; 0: no limit
    memory: int = 0  # bytes of memory at most; 0: no limit
