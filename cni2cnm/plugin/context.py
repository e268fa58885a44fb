"""One ADD's context: what the runtime asked and what the plugin works with, so the steps
take one argument instead of eight."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cni2cnm import netns
from cni2cnm.cni.env import CNIEnv
from cni2cnm.engine import Endpoint, EngineAPI, Network
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.request import EndpointRequest
from cni2cnm.store import Store


@dataclass
class AddContext:
    env: CNIEnv
    conf: PluginConf
    engine: EngineAPI
    store: Store
    namespaces: netns.Namespaces
    environ: Mapping[str, str]
    request: EndpointRequest
    network: Network
    target: netns.Pinned  # CNI_NETNS, opened once: every step uses it, never the path
    links_before: set[str] = field(default_factory=set)  # interfaces in CNI_NETNS before


@dataclass
class Attached:
    """What ADD learned from the engine and the namespace after connecting."""

    endpoint: Endpoint
    link: netns.Link
    routes: list[netns.RouteEntry]
    # Interfaces Docker added with the endpoint (the docker_gwbridge interface that gives
    # overlay attachments their default route), with their routes.
    extras: list[tuple[netns.Link, list[netns.RouteEntry]]] = field(default_factory=list)
