"""Everything ADD checks and refuses before it changes anything on the engine."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections.abc import Iterator

from cni2cnm import netns
from cni2cnm.cni.env import CNIEnv
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.engine import Container, EngineAPI, Network
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.context import AddPlan
from cni2cnm.plugin.request import EndpointRequest

log = logging.getLogger("cni2cnm.plugin")


def plan_add(engine: EngineAPI, namespaces: netns.Namespaces, env: CNIEnv, conf: PluginConf,
             request: EndpointRequest, target: netns.Pinned) -> AddPlan:
    """What ADD will do, once every refusal has been checked (in this order, so the first
    problem a runtime hears of stays the same): the plan the attach steps carry out."""
    container = sandbox_for(engine, namespaces, env, conf, target)
    network = find_network(engine, conf.docker_network)
    links_before = refuse_taken_ifname(namespaces, env, target)
    refuse_unusable_addresses(network, request)
    if container is not None:
        refuse_shared_namespace(container)
        refuse_existing_endpoint(container, network)
        refuse_unnameable(engine, env)
    return AddPlan(env=env, conf=conf, request=request, network=network, target=target,
                   links_before=frozenset(links_before), container=container,
                   detach_none=container is not None and conf.detachNone
                   and "none" in container.endpoints)


@contextlib.contextmanager
def pinned_netns(namespaces: netns.Namespaces, path: str) -> Iterator[netns.Pinned]:
    """CNI_NETNS opened once and checked on that descriptor; every later step uses it, so
    a path that names another namespace a moment later (a bind mount replaced, a PID
    reused) changes nothing but the namespace checked here."""
    try:
        target = namespaces.pin(path)
    except netns.NetnsError:
        raise CNIError(Code.INVALID_ENVIRONMENT, "CNI_NETNS is not a network namespace",
                       f"CNI_NETNS={path} does not exist or is not a network namespace"
                       ) from None
    with target:
        refuse_unusable_netns(namespaces, target)
        yield target


def refuse_unusable_netns(namespaces: netns.Namespaces, path: netns.Target) -> None:
    """CNI_NETNS must be a network namespace, and never the node's own."""
    if not namespaces.is_namespace(path):
        raise CNIError(Code.INVALID_ENVIRONMENT, "CNI_NETNS is not a network namespace",
                       f"CNI_NETNS={path} does not exist or is not a network namespace")
    if namespaces.is_host(path):
        raise CNIError(Code.INVALID_ENVIRONMENT, "CNI_NETNS is the host's network namespace",
                       f"CNI_NETNS={path} is the node's own network namespace; cni2cnm only "
                       "attaches container namespaces and never changes the host's")


def sandbox_for(engine: EngineAPI, namespaces: netns.Namespaces, env: CNIEnv,
                conf: PluginConf, target: netns.Pinned) -> Container | None:
    """The Docker container to connect, or None for a proxy sandbox (by `mode`)."""
    if conf.mode == "proxy":
        return None
    container, looked = find_container(engine, namespaces, env, target)
    if container is None and conf.mode == "container":
        raise CNIError(Code.UNKNOWN_CONTAINER, "no Docker container for this CNI container",
                       f"looked for {', '.join(looked)} on the Docker engine; none found "
                       '(mode "auto" or "proxy" attaches namespaces Docker does not own)')
    return container


def container_refs(env: CNIEnv) -> list[str]:
    """The Docker container references the request names: CNI_CONTAINERID, then the pod's
    infra container ID (cri-dockerd)."""
    refs = [env.container_id, env.args.get("K8S_POD_INFRA_CONTAINER_ID", "")]
    return [ref for ref in dict.fromkeys(refs) if ref]


def find_container(engine: EngineAPI, namespaces: netns.Namespaces, env: CNIEnv,
                   target: netns.Pinned | None = None) -> tuple[Container | None, list[str]]:
    """The Docker container that is the CNI container's CNM sandbox, and what was tried
    (`target`: CNI_NETNS as ADD opened it; else its path is looked up now)."""
    wanted = namespaces.identity(target or env.netns) if env.netns else None
    looked: list[str] = []
    for ref in container_refs(env):
        looked.append(f"container {ref!r}")
        c = engine.container(ref)
        if c is None:
            continue
        if not c.running:
            raise CNIError(Code.UNKNOWN_CONTAINER, "container not running",
                           f"Docker container {c.name} ({c.short_id}) is {c.status or 'stopped'}"
                           "; it must run before it can be attached")
        if wanted is not None and namespaces.identity(netns.of_pid(c.pid)) != wanted:
            raise CNIError(Code.INVALID_ENVIRONMENT, "CNI_NETNS is not the container's namespace",
                           f"CNI_NETNS={env.netns} is not the network namespace of Docker "
                           f"container {c.name} ({c.short_id}, pid {c.pid})")
        return c, looked
    if wanted is not None:
        looked.append(f"a running container whose network namespace is {env.netns}")
        for cid in engine.running_container_ids():
            c = engine.container(cid)
            if c is not None and c.pid and namespaces.identity(netns.of_pid(c.pid)) == wanted:
                return c, looked
    elif env.netns:
        looked.append(f"CNI_NETNS {env.netns} (it does not exist)")
    return None, looked


def refuse_shared_namespace(c: Container) -> None:
    mode = c.network_mode
    if mode == "host":
        raise CNIError(Code.ENGINE_REFUSED, "container uses the host network",
                       f"Docker container {c.name} ({c.short_id}) runs with network mode host; "
                       "Docker cannot connect it to other networks")
    if mode.startswith("container:"):
        raise CNIError(Code.ENGINE_REFUSED, "container shares another's network namespace",
                       f"Docker container {c.name} ({c.short_id}) runs with network mode {mode};"
                       " attach the container that owns the namespace instead")


def find_network(engine: EngineAPI, ref: str) -> Network:
    network = engine.network(ref)
    if network is not None:
        return network
    if engine.swarm_role() == "worker":
        # A swarm-scoped network is invisible on a worker until its first local attachment;
        # the connect itself tells whether it exists and is attachable.
        log.info("network %s not visible on this swarm worker: connecting by name", ref)
        return Network.not_yet_visible(ref)
    raise CNIError(Code.INVALID_CONFIG, "Docker network not found",
                   f"network {ref!r} does not exist on {engine.shown}; create it with "
                   "`docker network create` or set \"network\" in the config")


def refuse_existing_endpoint(container: Container, network: Network) -> None:
    """A container has at most one endpoint per network; one we did not record is not ours."""
    if not network.id:
        return  # not visible yet on this swarm worker: nothing here is attached to it
    ep = container.endpoint_in(network.id)
    if ep is not None and ep.attached:
        raise CNIError(Code.INTERFACE_EXISTS, "container already attached to the network",
                       f"Docker container {container.name} ({container.short_id}) is already "
                       f"connected to {network.name} (endpoint {ep.endpoint_id[:12]}, "
                       f"{', '.join(ep.addresses) or 'no address'}), not by cni2cnm")


def refuse_taken_ifname(namespaces: netns.Namespaces, env: CNIEnv, target: netns.Pinned
                        ) -> set[str]:
    """The spec: an interface of the requested name already in the container is an error.
    Returns the names of the interfaces there now."""
    with namespaces.open(target) as ns:
        names = {lk.name for lk in ns.links()}
    if env.ifname in names:
        raise CNIError(Code.INTERFACE_EXISTS, "interface already exists",
                       f"an interface named {env.ifname} already exists in {env.netns}")
    return names


def refuse_unnameable(engine: EngineAPI, env: CNIEnv) -> None:
    """Engines before API 1.48 name interfaces eth0, eth1, ... themselves: refuse other
    names before connecting (a connect, even rolled back, uses up a name)."""
    if engine.supports_ifname() or re.fullmatch(r"eth[0-9]+", env.ifname):
        return
    api = engine.api_version()
    raise CNIError(Code.INTERFACE_MISMATCH, "this engine cannot name the interface",
                   f"CNI_IFNAME={env.ifname}: Docker engines before API 1.48 (Docker 28.0) "
                   f"name interfaces eth0, eth1, ... themselves, this one speaks API "
                   f"{api[0]}.{api[1]}; use CNI_IFNAME=eth0 or upgrade the engine")


def refuse_unusable_addresses(network: Network, request: EndpointRequest) -> None:
    """Static addresses Docker would refuse, refused before connecting.

    A failed connect on dockerd 20.10 leaves a stale entry behind (and on overlay
    networks a taken address hangs for ~20 s), so check what can be known first.
    """
    if not network.id:
        return  # a swarm network this worker cannot see yet: the engine will judge
    in_use = {}
    for m in network.members:
        for cidr in m.addresses:
            in_use[str(ipaddress.ip_interface(cidr).ip)] = m.name or "?"
    for wanted in (request.ipv4, request.ipv6):
        if wanted is None:
            continue
        addr = ipaddress.ip_address(wanted)
        subnets = [s for s in network.subnets
                   if s.subnet and ipaddress.ip_network(s.subnet).version == addr.version]
        if not subnets:
            raise CNIError(Code.INVALID_CONFIG, "static address not possible on this network",
                           f"network {network.name} has no configured IPv{addr.version} "
                           "subnet; Docker accepts static addresses only on networks created "
                           "with --subnet")
        if not any(addr in ipaddress.ip_network(s.subnet) for s in subnets):
            raise CNIError(Code.INVALID_CONFIG, "invalid address requested",
                           f"{addr} does not belong to any subnet of network {network.name} "
                           f"({', '.join(s.subnet for s in subnets)})")
        for s in subnets:
            net = ipaddress.ip_network(s.subnet)
            if addr.version == 4 and net.prefixlen < 31 and addr in (
                net.network_address, net.broadcast_address
            ):
                raise CNIError(Code.INVALID_CONFIG, "invalid address requested",
                               f"{addr} is the network or broadcast address of {s.subnet}")
        if any(s.gateway == str(addr) for s in subnets):
            raise CNIError(Code.INVALID_CONFIG, "address already in use",
                           f"{addr} is the gateway of network {network.name}")
        if str(addr) in in_use:
            raise CNIError(Code.INVALID_CONFIG, "address already in use",
                           f"{addr} is already in use on network {network.name} by container "
                           f"{in_use[str(addr)]}")
