"""Container mode: connect the Docker container that owns CNI_NETNS, verify what Docker
made, and undo it all when anything fails. Also the one way to detach a record."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from cni2cnm import netns
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.engine import (
    IFNAME_OPTION,
    Container,
    EngineAPI,
    EngineError,
    NotConnected,
    NotFound,
)
from cni2cnm.plugin import proxy
from cni2cnm.plugin.context import AddContext, Attached
from cni2cnm.plugin.preflight import visible
from cni2cnm.store import ADDING, ATTACHED, Attachment, Store, StoreError
from cni2cnm.testhook import stop_point

log = logging.getLogger("cni2cnm.plugin")


def add_container(ctx: AddContext, container: Container) -> Attached:
    """Record the intent, detach `none`, connect, verify; rolled back on any failure."""
    env, conf, engine, network = ctx.env, ctx.conf, ctx.engine, ctx.network
    detach_none = conf.detachNone and "none" in container.endpoints
    att = ctx.store.put(Attachment(
        network=conf.name, container_id=env.container_id, ifname=env.ifname,
        state=ADDING, docker_network=conf.docker_network, network_id=network.id,
        network_name=network.name, docker_id=container.id, docker_name=container.name,
        netns=env.netns, none_detached=detach_none, docker_host=engine.base_url,
        **netns_identity(ctx),
    ))
    with undone_on_failure(engine, ctx.namespaces, ctx.store, att):
        stop_point(ctx.environ, "after-intent")
        if detach_none:
            engine.disconnect(container.id, "none")
        connect(ctx, container)
        stop_point(ctx.environ, "after-connect")
        ctx.network = network = visible(engine, network)
        att.network_id, att.network_name = network.id, network.name
        attached = verify_attached(ctx, container)
        record_attached(ctx, att, attached)
    return attached


def connect(ctx: AddContext, container: Container) -> None:
    request = ctx.request
    opts = dict(request.driver_opts)
    if ctx.engine.supports_ifname():
        opts[IFNAME_OPTION] = ctx.env.ifname
    ctx.engine.connect(container.id, ctx.network.ref, ipv4=request.ipv4, ipv6=request.ipv6,
                       aliases=list(request.aliases), mac=request.mac, driver_opts=opts)


def verify_attached(ctx: AddContext, container: Container) -> Attached:
    """Check, inside CNI_NETNS, that Docker made the interface the runtime asked for."""
    env, network = ctx.env, ctx.network
    after = ctx.engine.container(container.id)
    ep = after.endpoint_in(network.id) if after else None
    if ep is None or not ep.attached:
        raise CNIError(Code.ENGINE_REFUSED, "endpoint missing after connect",
                       f"Docker reported no endpoint of {container.name} in {network.name}")
    with ctx.namespaces.open(ctx.target) as ns:
        links = ns.links()
        link = netns.find_link(links, ep.mac, ep.addresses)
        if link is None:
            raise CNIError(Code.INTERFACE_MISMATCH, "endpoint interface not found",
                           f"no interface in {env.netns} carries MAC {ep.mac or '?'} or "
                           f"addresses {ep.addresses} of the Docker endpoint")
        routes = ns.routes(link.index)
        extras = [(lk, ns.routes(lk.index)) for lk in links
                  if lk.name not in ctx.links_before and lk.index != link.index]
    attached = Attached(endpoint=ep, link=link, routes=routes, extras=extras)
    check_requested(ctx, attached)
    return attached


def check_requested(ctx: AddContext, attached: Attached) -> None:
    """The interface Docker made is the one the runtime asked for."""
    engine, env, request = ctx.engine, ctx.env, ctx.request
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


def netns_identity(ctx: AddContext) -> dict[str, int]:
    """The identity of the namespace ADD opened, recorded with the intent: DEL and CHECK
    touch the namespace only while CNI_NETNS still names it."""
    dev, ino = ctx.namespaces.identity(ctx.target) or (0, 0)
    return {"netns_dev": dev, "netns_ino": ino}


def record_attached(ctx: AddContext, att: Attachment, attached: Attached) -> None:
    att.state = ATTACHED
    att.endpoint_id = attached.endpoint.endpoint_id
    att.interface = attached.link.name
    att.mac = attached.link.mac
    att.ips = attached.endpoint.addresses
    ctx.store.put(att)


@contextlib.contextmanager
def undone_on_failure(engine: EngineAPI, namespaces: netns.Namespaces, store: Store,
                      att: Attachment) -> Iterator[None]:
    """Whatever fails (or interrupts) after the intent was recorded is rolled back."""
    try:
        yield
    except BaseException:
        rollback(engine, namespaces, store, att)
        raise


def rollback(engine: EngineAPI, namespaces: netns.Namespaces, store: Store,
             att: Attachment) -> None:
    """Undo a failed ADD: the container ends as it started, and no record is left.

    If the engine cannot be reached to undo, the intent row stays so that the
    DEL the runtime sends next (or GC) finishes the job.
    """
    try:
        detach(engine, namespaces, att)
        c = engine.container(att.docker_id) if att.mode == "container" else None
        stale = c.endpoints.get(att.network_name) if c is not None else None
        if c is not None and stale is not None and not stale.attached:
            clear_stale_entry(engine, c, att)
            c = engine.container(att.docker_id)
        if att.none_detached and c is not None and "none" not in c.endpoints and not (
            any(ep.attached for ep in c.endpoints.values())
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


def clear_stale_entry(engine: EngineAPI, c: Container, att: Attachment) -> None:
    """dockerd 20.10 keeps a network entry with an empty EndpointID after a failed connect;
    it cannot be disconnected, only overwritten by a successful connect. Connect plainly,
    then disconnect, so the container ends as it started (Docker's interface counter
    moves on: the next interface it makes is named eth<N+1>)."""
    log.warning("clearing the stale %s entry a failed connect left on %s", att.network_name,
                c.name)
    engine.connect(c.id, att.network_id)
    engine.disconnect(c.id, att.network_id, force=True)


def detach(engine: EngineAPI, namespaces: netns.Namespaces, att: Attachment) -> None:
    """Disconnect what the record describes; success when it is already gone.

    One engine call in the common case: a disconnect by container ID. ADD refused containers
    already on the network, so an endpoint of this container there is ours, even when its
    ID changed (dockerd re-creates endpoints when it restarts a container). Only when no
    container has the recorded ID does it fall back to the recorded NAME (dockerd finds a
    removed container's leftover endpoint by name), and only when no other container now
    carries that name: a reused name is someone else's container.
    """
    if att.mode == "proxy":
        proxy.release(engine, namespaces, att)
        return
    network_ref = att.network_id or att.docker_network
    if att.docker_id and _disconnect_known(engine, att.docker_id, network_ref):
        return
    if not att.docker_name:
        return
    other = engine.container(att.docker_name)
    if other is not None and other.id != att.docker_id:
        log.warning("not detaching %s/%s by name: the name %s now belongs to another "
                    "container (%s), not the one ADD attached (%s)", att.container_id,
                    att.ifname, att.docker_name, other.short_id, att.docker_id[:12])
        return
    _disconnect_known(engine, att.docker_name, network_ref)


def _disconnect_known(engine: EngineAPI, container: str, network: str) -> bool:
    """Force-disconnect; True when done or nothing was connected, False when the engine
    knows no such container."""
    try:
        engine.disconnect(container, network, force=True)
    except NotConnected:
        return True
    except NotFound:
        return False
    return True
