"""The translation: CNI operations on Docker networks.

    ADD    -> find the container's CNM sandbox, detach `none`, `network connect`,
              verify the interface inside CNI_NETNS, record, print the result
    DEL    -> `network disconnect --force` of what the store recorded, drop the record
    CHECK  -> the recorded endpoint, the engine and the namespace still agree with prevResult
    GC     -> DEL every recorded attachment of this network the runtime no longer lists
    STATUS -> the engine answers and the network exists

The engine adapter (engine.py) knows nothing of CNI; every EngineError becomes a
CNIError here, in `engine_errors`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from cni2cnm import netns, proxy
from cni2cnm.cni.config import DNS, NetConf
from cni2cnm.cni.env import CNIEnv
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.cni.result import Interface, IPConfig, Result, Route, parse_result
from cni2cnm.engine import (
    DEFAULT_HOST,
    IFNAME_OPTION,
    Conflict,
    Container,
    Endpoint,
    Engine,
    EngineError,
    EngineUnavailable,
    Network,
    NotFound,
    TLSSettings,
)
from cni2cnm.request import EndpointRequest, endpoint_request
from cni2cnm.store import ADDING, ATTACHED, Attachment, Store, StoreBusy, StoreError
from cni2cnm.testhook import stop_point

log = logging.getLogger("cni2cnm.plugin")

MIN_API = (1, 40)


def engine_for(conf: NetConf, environ: Mapping[str, str]) -> Engine:
    host = conf.dockerHost or environ.get("DOCKER_HOST") or DEFAULT_HOST
    tls = None
    if conf.tls is not None:
        tls = TLSSettings(ca=conf.tls.ca, cert=conf.tls.cert, key=conf.tls.key,
                          verify=conf.tls.verify)
    return Engine(host, timeout=conf.dockerTimeout, tls=tls)


def store_error(e: StoreError) -> CNIError:
    """A store failure as the runtime sees it: busy (a lock wait timed out) is 11, else 5."""
    if isinstance(e, StoreBusy):
        return CNIError(Code.TRY_AGAIN_LATER, "busy: another operation on this container holds "
                        "its lock; retry", str(e))
    return CNIError(Code.IO_FAILURE, "state store unavailable", str(e))


_P = ParamSpec("_P")
_T = TypeVar("_T")


def store_errors(handler: Callable[_P, _T]) -> Callable[_P, _T]:
    """Each handler's outer boundary: a StoreError raised outside `engine_errors` (a store
    read or write in DEL, CHECK or GC) is a CNI error too, never an internal error (999)."""
    @functools.wraps(handler)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return handler(*args, **kwargs)
        except StoreError as e:
            raise store_error(e) from None
    return run


@dataclass
class Attached:
    """What ADD learned from the engine and the namespace after connecting."""

    endpoint: Endpoint
    link: netns.Link
    routes: list[netns.RouteEntry]
    # Interfaces Docker added with the endpoint (the docker_gwbridge interface that gives
    # overlay attachments their default route), with their routes.
    extras: list[tuple[netns.Link, list[netns.RouteEntry]]] = field(default_factory=list)


class DockerPlugin:
    """The CNI plugin. `engine_factory` lets unit tests substitute a fake engine."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        engine_factory: Callable[[NetConf, Mapping[str, str]], Engine] = engine_for,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.engine_factory = engine_factory

    def engine(self, conf: NetConf, recorded: str = "") -> Engine:
        """The engine to ask: the config's dockerHost, else the engine the attachment was
        made on (runtimes do not always give DEL the environment ADD had: podman's cleanup
        process drops DOCKER_HOST), else DOCKER_HOST, else the local socket."""
        environ = self.environ
        if recorded and not conf.dockerHost:
            environ = {**environ, "DOCKER_HOST": recorded}
        return self.engine_factory(conf, environ)

    # ==== ADD ================================================================

    @store_errors
    def add(self, env: CNIEnv, conf: NetConf) -> Result:
        prev = parse_result(conf.prevResult, conf.cniVersion) if conf.prevResult else None
        request = endpoint_request(env, conf)
        store = open_store(conf)
        engine = self.engine(conf)
        with store, lock(store, env.container_id), engine_errors(engine, "ADD"):
            key = (conf.name, env.container_id, env.ifname)
            existing = store.get(*key)
            if existing is not None and existing.state == ATTACHED:
                raise CNIError(Code.INTERFACE_EXISTS, "attachment already exists",
                               f"{env.container_id}/{env.ifname} is already attached to network "
                               f"{existing.network_name}; DEL it before adding it again")
            if existing is not None:
                log.warning("finishing an interrupted ADD of %s/%s first", *key[1:])
                detach(engine, existing)
                store.delete(*key)
            container = sandbox_for(engine, env, conf)
            network = find_network(engine, conf.docker_network)
            links_before = refuse_taken_ifname(env)
            refuse_unusable_addresses(network, request)
            if container is None:
                attached = self._add_proxy(engine, store, env, conf, network, request)
            else:
                attached = self._add_container(engine, store, env, conf, container, network,
                                               request, links_before)
        return build_result(prev, env, conf, attached)

    def _add_container(self, engine: Engine, store: Store, env: CNIEnv, conf: NetConf,
                       container: Container, network: Network, request: EndpointRequest,
                       links_before: set[str]) -> Attached:
        """Container mode: connect the Docker container that owns CNI_NETNS."""
        refuse_shared_namespace(container)
        refuse_existing_endpoint(container, network)
        refuse_unnameable(engine, env)
        detach_none = conf.detachNone and "none" in container.endpoints
        att = store.put(Attachment(
            network=conf.name, container_id=env.container_id, ifname=env.ifname,
            state=ADDING, docker_network=conf.docker_network, network_id=network.id,
            network_name=network.name, docker_id=container.id, docker_name=container.name,
            netns=env.netns, none_detached=detach_none, docker_host=engine.base_url,
        ))
        with undone_on_failure(engine, store, att):
            stop_point(self.environ, "after-intent")
            if detach_none:
                engine.disconnect(container.id, "none")
            connect(engine, container, network, env, request)
            stop_point(self.environ, "after-connect")
            network = visible(engine, network)
            att.network_id, att.network_name = network.id, network.name
            attached = verify_attached(engine, container, network, env, request, links_before)
            record_attached(store, att, attached, env)
        return attached

    def _add_proxy(self, engine: Engine, store: Store, env: CNIEnv, conf: NetConf,
                   network: Network, request: EndpointRequest) -> Attached:
        """Proxy mode: a sandbox container of our own, its interface moved into CNI_NETNS."""
        name = proxy.sandbox_name(conf.name, env.container_id, env.ifname)
        att = store.put(Attachment(
            network=conf.name, container_id=env.container_id, ifname=env.ifname,
            state=ADDING, mode="proxy", docker_network=conf.docker_network,
            network_id=network.id, network_name=network.name, docker_name=name,
            sandbox_name=name, netns=env.netns, docker_host=engine.base_url,
        ))
        with undone_on_failure(engine, store, att):
            stop_point(self.environ, "after-intent")
            labels = proxy.sandbox_labels(conf.name, env.container_id, env.ifname, env.netns)
            att.docker_id = att.sandbox_id = proxy.start_sandbox(
                engine, name, conf.sandboxImage, network.name, request, labels)
            store.put(att)
            stop_point(self.environ, "after-connect")
            network = visible(engine, network)
            att.network_id, att.network_name = network.id, network.name
            sandbox = engine.container(att.sandbox_id)
            ep = sandbox.endpoint_in(network.id) if sandbox else None
            if sandbox is None or ep is None or not ep.attached:
                raise CNIError(Code.ENGINE_REFUSED, "sandbox has no endpoint",
                               f"sandbox container {name} did not get an endpoint in "
                               f"{network.name}")
            att.mac = ep.mac
            store.put(att)
            moved = proxy.move_in(sandbox, ep.mac, ep.addresses, env.netns, env.ifname)
            att.sandbox_ifname = moved.sandbox_ifname
            attached = Attached(endpoint=ep, link=moved.link, routes=moved.routes)
            check_requested(engine, attached, env, request)
            record_attached(store, att, attached, env)
        return attached

    # ==== DEL ================================================================

    @store_errors
    def delete(self, env: CNIEnv, conf: NetConf) -> None:
        try:
            store = open_store(conf)
        except CNIError as e:
            log.error("DEL without the store (%s): detaching through the engine alone", e)
            engine = self.engine(conf)
            with engine_errors(engine, "DEL"):
                delete_without_store(engine, env, conf)
            return
        with store, lock(store, env.container_id):
            att = store.get(conf.name, env.container_id, env.ifname)
            if att is None:
                log.info("DEL %s/%s: nothing recorded, nothing to do", env.container_id,
                         env.ifname)
                return
            engine = self.engine(conf, att.docker_host)
            with engine_errors(engine, "DEL"):
                detach(engine, att)
            store.delete(*att.key)

    # ==== CHECK ==============================================================

    @store_errors
    def check(self, env: CNIEnv, conf: NetConf) -> None:
        if not conf.prevResult:
            raise CNIError(Code.INVALID_CONFIG, "CHECK needs prevResult",
                           "the runtime must pass the ADD result as prevResult")
        prev = parse_result(conf.prevResult, conf.cniVersion)
        store = open_store(conf)
        with store, lock(store, env.container_id):
            att = store.get(conf.name, env.container_id, env.ifname)
            if att is None or att.state != ATTACHED:
                fail_check(f"no attachment of {env.container_id}/{env.ifname} to network "
                           f"{conf.name} is recorded (was ADD run?)")
                return
            engine = self.engine(conf, att.docker_host)
            with engine_errors(engine, "CHECK"):
                check_attachment(engine, att, prev, env)

    # ==== GC =================================================================

    @store_errors
    def gc(self, env: CNIEnv, conf: NetConf) -> None:
        valid = conf.valid_attachment_keys() or set()
        store = open_store(conf)
        engines = {"": self.engine(conf)}
        errors: list[str] = []
        unavailable = False
        with store:
            for att in store.list(conf.name):
                if att.docker_host not in engines:
                    engines[att.docker_host] = self.engine(conf, att.docker_host)
                engine = engines[att.docker_host]
                try:
                    with lock(store, att.container_id):
                        current = store.get(*att.key)
                        if current is None:
                            continue
                        if (att.container_id, att.ifname) in valid and still_there(engine,
                                                                                   current):
                            continue
                        detach(engine, current)
                        store.delete(*att.key)
                        log.info("GC removed %s/%s", att.container_id, att.ifname)
                except EngineError as e:
                    unavailable = unavailable or isinstance(e, EngineUnavailable)
                    errors.append(f"{att.container_id}/{att.ifname}: {e.explanation}")
                except (CNIError, StoreError, netns.NetnsError) as e:
                    unavailable = unavailable or isinstance(e, StoreBusy) or (
                        isinstance(e, CNIError) and e.code == Code.TRY_AGAIN_LATER)
                    errors.append(f"{att.container_id}/{att.ifname}: {e}")
            engine = engines[""]
            try:
                for sandbox_id, cid, ifname in proxy.labelled_sandboxes(engine, conf.name):
                    if (cid, ifname) in valid or store.get(conf.name, cid, ifname) is not None:
                        continue
                    log.info("GC removes orphan sandbox %s of %s/%s", sandbox_id[:12], cid,
                             ifname)
                    engine.remove_container(sandbox_id)
            except EngineError as e:
                unavailable = unavailable or isinstance(e, EngineUnavailable)
                errors.append(f"orphan sandboxes: {e.explanation}")
        for e in engines.values():
            e.close()
        if errors:
            raise CNIError(Code.TRY_AGAIN_LATER if unavailable else Code.ENGINE_REFUSED,
                           f"GC could not finish: {len(errors)} problem(s)", "; ".join(errors))

    # ==== STATUS =============================================================

    @store_errors
    def status(self, env: CNIEnv, conf: NetConf) -> None:
        try:
            store = open_store(conf)
        except CNIError as e:
            raise CNIError(Code.NOT_AVAILABLE, "state store unavailable",
                           f"{e.details}; fix stateDir so ADD can record attachments") from None
        engine = self.engine(conf)
        with store, contextlib.closing(engine):
            try:
                api = engine.api_version()
                if api < MIN_API:
                    raise CNIError(Code.NOT_AVAILABLE, "Docker engine too old",
                                   f"{engine.base_url} speaks API {api[0]}.{api[1]}; cni2cnm "
                                   f"needs {MIN_API[0]}.{MIN_API[1]} or newer (Docker 19.03+)")
                network = engine.network(conf.docker_network)
            except EngineError as e:
                raise CNIError(Code.NOT_AVAILABLE, "Docker engine not available",
                               f"{e.explanation}; start dockerd or fix dockerHost/DOCKER_HOST"
                               ) from None
            if network is not None:
                return
            if engine_is_worker(engine):
                log.info("STATUS: %s not visible on this swarm worker before its first "
                         "attachment; ADD will tell whether it exists", conf.docker_network)
                return
            try:
                recorded = len(store.list(conf.name))
            except StoreError:
                recorded = 0
        code = Code.LIMITED_CONNECTIVITY if recorded else Code.NOT_AVAILABLE
        raise CNIError(code, "Docker network not found",
                       f"network {conf.docker_network!r} does not exist on {engine.base_url}"
                       + (f"; {recorded} recorded attachment(s) may have lost connectivity"
                          if recorded else "")
                       + "; create it with `docker network create`")


# ==== the steps, in the order ADD uses them ===================================


def open_store(conf: NetConf) -> Store:
    try:
        return Store(conf.stateDir).open()
    except StoreError as e:
        raise CNIError(Code.IO_FAILURE, "state store unavailable", str(e)) from None


@contextlib.contextmanager
def lock(store: Store, container_id: str) -> Iterator[None]:
    try:
        with store.lock(container_id):
            yield
    except StoreError as e:
        raise store_error(e) from None


def sandbox_for(engine: Engine, env: CNIEnv, conf: NetConf) -> Container | None:
    """The Docker container to connect, or None for a proxy sandbox (by `mode`)."""
    if conf.mode == "proxy":
        return None
    container, looked = find_container(engine, env)
    if container is None and conf.mode == "container":
        raise CNIError(Code.UNKNOWN_CONTAINER, "no Docker container for this CNI container",
                       f"looked for {', '.join(looked)} on the Docker engine; none found "
                       '(mode "auto" or "proxy" attaches namespaces Docker does not own)')
    return container


def find_container(engine: Engine, env: CNIEnv) -> tuple[Container | None, list[str]]:
    """The Docker container that is the CNI container's CNM sandbox, and what was tried."""
    wanted = netns.identity(env.netns) if env.netns else None
    looked: list[str] = []
    for ref in dict.fromkeys([env.container_id, env.args.get("K8S_POD_INFRA_CONTAINER_ID", "")]):
        if not ref:
            continue
        looked.append(f"container {ref!r}")
        c = engine.container(ref)
        if c is None:
            continue
        if not c.running:
            raise CNIError(Code.UNKNOWN_CONTAINER, "container not running",
                           f"Docker container {c.name} ({c.short_id}) is {c.status or 'stopped'}"
                           "; it must run before it can be attached")
        if wanted is not None and netns.identity(f"/proc/{c.pid}/ns/net") != wanted:
            raise CNIError(Code.INVALID_ENVIRONMENT, "CNI_NETNS is not the container's namespace",
                           f"CNI_NETNS={env.netns} is not the network namespace of Docker "
                           f"container {c.name} ({c.short_id}, pid {c.pid})")
        return c, looked
    if wanted is not None:
        looked.append(f"a running container whose network namespace is {env.netns}")
        for cid in engine.running_container_ids():
            c = engine.container(cid)
            if c is not None and c.pid and netns.identity(f"/proc/{c.pid}/ns/net") == wanted:
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


def find_network(engine: Engine, ref: str) -> Network:
    network = engine.network(ref)
    if network is not None:
        return network
    if engine.swarm_role() == "worker":
        # A swarm-scoped network is invisible on a worker until its first local attachment;
        # the connect itself tells whether it exists and is attachable.
        log.info("network %s not visible on this swarm worker: connecting by name", ref)
        return Network.not_yet_visible(ref)
    raise CNIError(Code.INVALID_CONFIG, "Docker network not found",
                   f"network {ref!r} does not exist on {engine.base_url}; create it with "
                   "`docker network create` or set \"network\" in the config")


def visible(engine: Engine, network: Network) -> Network:
    """After a connect on a swarm worker the network can be inspected."""
    if network.id:
        return network
    found = engine.network(network.name)
    if found is None:
        raise CNIError(Code.ENGINE_REFUSED, "network not visible after connect",
                       f"network {network.name} is still unknown to {engine.base_url} after "
                       "connecting to it")
    return found


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


def refuse_taken_ifname(env: CNIEnv) -> set[str]:
    """The spec: an interface of the requested name already in the container is an error.
    Returns the names of the interfaces there now."""
    if not netns.is_namespace(env.netns):
        raise CNIError(Code.INVALID_ENVIRONMENT, "CNI_NETNS is not a network namespace",
                       f"CNI_NETNS={env.netns} does not exist or is not a network namespace")
    with open_netns(env.netns) as ns:
        names = {lk.name for lk in ns.links()}
    if env.ifname in names:
        raise CNIError(Code.INTERFACE_EXISTS, "interface already exists",
                       f"an interface named {env.ifname} already exists in {env.netns}")
    return names


def refuse_unnameable(engine: Engine, env: CNIEnv) -> None:
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
    for info in network.containers.values():
        for key in ("IPv4Address", "IPv6Address"):
            if info.get(key):
                in_use[str(ipaddress.ip_interface(info[key]).ip)] = info.get("Name") or "?"
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


def connect(engine: Engine, container: Container, network: Network, env: CNIEnv,
            request: EndpointRequest) -> None:
    opts = dict(request.driver_opts)
    if engine.supports_ifname():
        opts[IFNAME_OPTION] = env.ifname
    engine.connect(container.id, network.ref, ipv4=request.ipv4, ipv6=request.ipv6,
                   aliases=list(request.aliases), mac=request.mac, driver_opts=opts)


def verify_attached(engine: Engine, container: Container, network: Network, env: CNIEnv,
                    request: EndpointRequest, links_before: set[str]) -> Attached:
    """Check, inside CNI_NETNS, that Docker made the interface the runtime asked for."""
    after = engine.container(container.id)
    ep = after.endpoint_in(network.id) if after else None
    if ep is None or not ep.attached:
        raise CNIError(Code.ENGINE_REFUSED, "endpoint missing after connect",
                       f"Docker reported no endpoint of {container.name} in {network.name}")
    with open_netns(env.netns) as ns:
        links = ns.links()
        link = netns.find_link(links, ep.mac, ep.addresses)
        if link is None:
            raise CNIError(Code.INTERFACE_MISMATCH, "endpoint interface not found",
                           f"no interface in {env.netns} carries MAC {ep.mac or '?'} or "
                           f"addresses {ep.addresses} of the Docker endpoint")
        routes = ns.routes(link.index)
        extras = [(lk, ns.routes(lk.index)) for lk in links
                  if lk.name not in links_before and lk.index != link.index]
    attached = Attached(endpoint=ep, link=link, routes=routes, extras=extras)
    check_requested(engine, attached, env, request)
    return attached


def check_requested(engine: Engine, attached: Attached, env: CNIEnv,
                    request: EndpointRequest) -> None:
    """The interface Docker made is the one the runtime asked for."""
    ep, link = attached.endpoint, attached.link
    api = engine.api_version()
    if link.name != env.ifname:
        why = ("this engine cannot choose interface names (API "
               f"{api[0]}.{api[1]} < 1.48, Docker 28.0)" if not engine.supports_ifname()
               else "the network's driver ignored the interface name option")
        raise CNIError(Code.INTERFACE_MISMATCH, "Docker chose another interface name",
                       f"Docker named the interface {link.name}, the runtime asked for "
                       f"{env.ifname}: {why}; use CNI_IFNAME={link.name} or a newer engine")
    if request.mac and link.mac != request.mac:
        raise CNIError(Code.INTERFACE_MISMATCH, "requested MAC address not applied",
                       f"asked for MAC {request.mac}, Docker set {link.mac} (engine API "
                       f"{api[0]}.{api[1]}; MAC addresses on connect need API 1.54, Docker "
                       "29.3); drop the MAC request or upgrade the engine")
    missing = [a for a in ep.addresses if a not in link.addresses]
    if missing:
        raise CNIError(Code.INTERFACE_MISMATCH, "endpoint addresses missing",
                       f"{link.name} in {env.netns} lacks {missing} reported by Docker")


def record_attached(store: Store, att: Attachment, attached: Attached, env: CNIEnv) -> None:
    ident = netns.identity(env.netns) or (0, 0)
    att.state = ATTACHED
    att.endpoint_id = attached.endpoint.endpoint_id
    att.interface = attached.link.name
    att.mac = attached.link.mac
    att.ips = attached.endpoint.addresses
    att.netns_dev, att.netns_ino = ident
    store.put(att)


@contextlib.contextmanager
def undone_on_failure(engine: Engine, store: Store, att: Attachment) -> Iterator[None]:
    """Whatever fails (or interrupts) after the intent was recorded is rolled back."""
    try:
        yield
    except BaseException:
        rollback(engine, store, att)
        raise


def rollback(engine: Engine, store: Store, att: Attachment) -> None:
    """Undo a failed ADD: the container ends as it started, and no record is left.

    If the engine cannot be reached to undo, the intent row stays so that the
    DEL the runtime sends next (or GC) finishes the job.
    """
    try:
        detach(engine, att)
        c = engine.container(att.docker_id) if att.mode == "container" else None
        stale = c.endpoints.get(att.network_name) if c is not None else None
        if c is not None and stale is not None and not stale.attached:
            clear_stale_entry(engine, c, att)
            c = engine.container(att.docker_id)
        if att.none_detached and c is not None and "none" not in c.endpoints and not (
            _attached_anywhere(c)
        ):
            engine.connect(att.docker_id, "none")
    except EngineError as e:
        log.error("rollback of %s/%s incomplete (%s); the record stays for DEL/GC",
                  att.container_id, att.ifname, e.explanation)
        return
    try:
        store.delete(*att.key)
    except StoreError as e:
        log.error("rollback: cannot drop the record of %s/%s: %s", att.container_id,
                  att.ifname, e)


def clear_stale_entry(engine: Engine, c: Container, att: Attachment) -> None:
    """dockerd 20.10 keeps a network entry with an empty EndpointID after a failed connect;
    it cannot be disconnected, only overwritten by a successful connect. Connect plainly,
    then disconnect, so the container ends as it started (Docker's interface counter
    moves on: the next interface it makes is named eth<N+1>)."""
    log.warning("clearing the stale %s entry a failed connect left on %s", att.network_name,
                c.name)
    engine.connect(c.id, att.network_id)
    engine.disconnect(c.id, att.network_id, force=True)


def engine_is_worker(engine: Engine) -> bool:
    try:
        return engine.swarm_role() == "worker"
    except EngineError:
        return False


def still_there(engine: Engine, att: Attachment) -> bool:
    """Whether what the attachment serves still exists (GC keeps it only then)."""
    if att.mode == "proxy":
        return netns.is_namespace(att.netns) and engine.container(att.sandbox_id) is not None
    return engine.container(att.docker_id) is not None


def _attached_anywhere(c: Container) -> bool:
    return any(ep.attached for ep in c.endpoints.values())


def detach(engine: Engine, att: Attachment) -> None:
    """Disconnect what the record describes; success when it is already gone.

    One engine call in the common case: a disconnect by container ID. ADD refused containers
    already on the network, so an endpoint of this container there is ours, even when its
    ID changed (dockerd re-creates endpoints when it restarts a container).
    """
    if att.mode == "proxy":
        proxy.release(engine, att.sandbox_id or att.sandbox_name, att.netns, att.mac,
                      att.sandbox_ifname)
        return
    network_ref = att.network_id or att.docker_network
    if att.docker_id and _quiet_disconnect(engine, att.docker_id, network_ref):
        return
    if att.docker_name:
        # No such container: Docker finds a removed container's endpoint by its NAME.
        _quiet_disconnect(engine, att.docker_name, network_ref)


def _quiet_disconnect(engine: Engine, container: str, network: str) -> bool:
    """Force-disconnect; True when done or there was nothing to disconnect, False on a 404
    (with force, dockerd answers "endpoint <ref> not found" for a container it does not
    know, and looks the endpoint up by that name)."""
    try:
        engine.disconnect(container, network, force=True)
    except NotFound:
        return False
    except EngineUnavailable:
        raise
    except EngineError as e:
        if "is not connected" in e.explanation or "not found" in e.explanation:
            return True
        raise
    return True


def delete_without_store(engine: Engine, env: CNIEnv, conf: NetConf) -> None:
    """DEL when the store cannot be read: detach this network from the container."""
    try:
        container, _ = find_container(engine, env)
    except CNIError:
        return
    if container is not None:
        _quiet_disconnect(engine, container.id, conf.docker_network)


def build_result(prev: Result | None, env: CNIEnv, conf: NetConf, attached: Attached) -> Result:
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


def result_dns(conf: NetConf) -> DNS | None:
    rc = conf.runtimeConfig
    if rc is not None and rc.dns is not None and conf.capability("dns"):
        return DNS(nameservers=rc.dns.servers, search=rc.dns.searches, options=rc.dns.options)
    return conf.dns


# ==== CHECK ===================================================================


def fail_check(details: str) -> None:
    raise CNIError(Code.CHECK_FAILED, "attachment check failed", details)


def check_attachment(engine: Engine, att: Attachment, prev: Result, env: CNIEnv) -> None:
    container = engine.container(att.docker_id)
    what = "sandbox container" if att.mode == "proxy" else "Docker container"
    if container is None:
        fail_check(f"{what} {att.docker_name} ({att.docker_id[:12]}) no longer exists")
        return
    if not container.running:
        fail_check(f"{what} {container.name} is {container.status}")
    ep = container.endpoint_in(att.network_id)
    if ep is None or not ep.attached:
        fail_check(f"{what} {container.name} is not attached to network "
                   f"{att.network_name}")
        return
    if att.mac and ep.mac and ep.mac != att.mac:
        fail_check(f"endpoint MAC is {ep.mac}, ADD recorded {att.mac}")
    ours = [i for i, iface in enumerate(prev.interfaces)
            if iface.name == env.ifname and (not iface.sandbox or iface.sandbox == env.netns)]
    if not ours:
        fail_check(f"prevResult lists no interface {env.ifname} in {env.netns}")
    expected = sorted(ip.address for ip in prev.ips if ip.interface in ours)
    if sorted(ep.addresses) != expected:
        fail_check(f"endpoint addresses are {sorted(ep.addresses)}, prevResult says {expected}")
    prev_mac = prev.interfaces[ours[0]].mac
    if prev_mac and ep.mac and prev_mac.lower() != ep.mac:
        fail_check(f"endpoint MAC is {ep.mac}, prevResult says {prev_mac}")
    if not netns.is_namespace(env.netns):
        fail_check(f"network namespace {env.netns} does not exist")
    with open_netns(env.netns) as ns:
        link = ns.link_named(env.ifname)
    if link is None:
        fail_check(f"no interface {env.ifname} in {env.netns}")
        return
    if ep.mac and link.mac != ep.mac:
        fail_check(f"{env.ifname} in {env.netns} has MAC {link.mac}, the endpoint {ep.mac}")
    missing = [a for a in ep.addresses if a not in link.addresses]
    if missing:
        fail_check(f"{env.ifname} in {env.netns} lacks addresses {missing}")
    if att.mode == "proxy":
        check_proxy_routes(prev, ep, link, env)


def check_proxy_routes(prev: Result, ep: Endpoint, link: netns.Link, env: CNIEnv) -> None:
    """Proxy mode re-created the routes Docker configured: they must still be there."""
    gateways = {g for g in (ep.gateway, ep.ipv6_gateway) if g}
    wanted = [(r.dst, r.gw) for r in prev.routes if r.gw in gateways]
    with open_netns(env.netns) as ns:
        present = {(r.dst, r.gw) for r in ns.routes(link.index)}
    lost = [f"{dst} via {gw}" for dst, gw in wanted if (dst, gw) not in present]
    if lost:
        fail_check(f"routes missing from {env.ifname} in {env.netns}: {', '.join(lost)}")


# ==== errors ==================================================================


@contextlib.contextmanager
def open_netns(path: str) -> Iterator[netns.Netns]:
    try:
        with netns.Netns(path) as ns:
            yield ns
    except netns.NetnsError as e:
        raise CNIError(Code.IO_FAILURE, "cannot read the network namespace", str(e)) from None


@contextlib.contextmanager
def engine_errors(engine: Engine, op: str) -> Iterator[None]:
    """The one place engine and store errors become CNI errors."""
    try:
        yield
    except EngineUnavailable as e:
        raise CNIError(Code.TRY_AGAIN_LATER, "Docker engine unavailable",
                       f"{e.explanation}; {op} can be retried once dockerd answers") from None
    except NotFound as e:
        raise CNIError(Code.INVALID_CONFIG, "not found by the Docker engine",
                       e.explanation) from None
    except Conflict as e:
        text = e.explanation
        code = Code.INTERFACE_EXISTS if "already exists" in text else Code.INVALID_CONFIG
        raise CNIError(code, "refused by the Docker engine", text) from None
    except EngineError as e:
        text = e.explanation
        if "context deadline exceeded" in text:
            text += (" (on a swarm overlay this is how dockerd refuses a static address that "
                     "is in use on another node)")
        code = Code.INVALID_CONFIG if _is_config_problem(text) else Code.ENGINE_REFUSED
        raise CNIError(code, "refused by the Docker engine", text) from None
    except StoreError as e:
        raise store_error(e) from None
    except netns.NetnsError as e:
        raise CNIError(Code.IO_FAILURE, "cannot change the network namespace", str(e)) from None
    except proxy.ProxyError as e:
        raise CNIError(Code.ENGINE_REFUSED, "proxy sandbox failed", str(e)) from None
    finally:
        engine.close()


def _is_config_problem(text: str) -> bool:
    """Refusals caused by what the config or the runtime asked for (code 7)."""
    lowered = text.lower()
    return any(s in lowered for s in (
        "invalid address", "address already in use", "user specified ip address",
        "does not belong", "no available", "invalid ip", "invalid mac",
        "code = notfound", "not manually attachable", "context deadline exceeded",
    ))
