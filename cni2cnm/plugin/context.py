"""ADD's values: the plan the preflight builds once (what to attach, where, how), the tools
that carry it out, and what the attach steps found. All frozen: a step returns what it did,
it never changes what an earlier step decided."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cni2cnm import netns
from cni2cnm.cni.env import CNIEnv
from cni2cnm.engine import Container, Endpoint, EngineAPI, Network
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.request import EndpointRequest
from cni2cnm.store import Store


@dataclass(frozen=True)
class AddPlan:
    """What ADD attaches, where and how: decided before anything changes, never changed."""

    env: CNIEnv
    conf: PluginConf
    request: EndpointRequest  # the addresses, MAC, aliases and driver options asked for
    network: Network  # as found before connecting (on a swarm worker maybe by name only)
    target: netns.Pinned  # CNI_NETNS, opened once: every step uses it, never the path
    links_before: frozenset[str]  # the interfaces in CNI_NETNS before anything changed
    container: Container | None  # container mode: the container owning CNI_NETNS; None: proxy
    detach_none: bool = False  # container mode: disconnect it from `none` first


@dataclass(frozen=True)
class AddContext:
    """What ADD works with, so the steps take one argument instead of five."""

    engine: EngineAPI
    store: Store
    namespaces: netns.Namespaces
    environ: Mapping[str, str]


@dataclass(frozen=True)
class Attached:
    """What ADD found in the engine and the namespace after connecting."""

    endpoint: Endpoint
    link: netns.Link
    routes: list[netns.RouteEntry]
    # Interfaces Docker added with the endpoint (the docker_gwbridge interface that gives
    # overlay attachments their default route), with their routes.
    extras: list[tuple[netns.Link, list[netns.RouteEntry]]] = field(default_factory=list)
