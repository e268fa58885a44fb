"""Container mode ADD: connect the Docker container that owns CNI_NETNS, verify what Docker
made, record it; anything failing on the way is rolled back (detach.rollback)."""

from __future__ import annotations

import dataclasses

from cni2cnm import netns
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.engine import IFNAME_OPTION, Container, Network
from cni2cnm.plugin.add_steps import check_requested, intent, record_attached, visible
from cni2cnm.plugin.context import AddContext, AddPlan, Attached
from cni2cnm.plugin.detach import rollback
from cni2cnm.testhook import stop_point


def add_container(ctx: AddContext, plan: AddPlan, container: Container) -> Attached:
    """Record the intent, detach `none`, connect, verify, record; rolled back on any failure."""
    att = ctx.store.record_intent(dataclasses.replace(
        intent(ctx, plan), docker_id=container.id, docker_name=container.name,
        none_detached=plan.detach_none))
    try:
        stop_point(ctx.environ, "after-intent")
        if plan.detach_none:
            ctx.engine.disconnect(container.id, "none")
        connect(ctx, plan, container)
        stop_point(ctx.environ, "after-connect")
        network = visible(ctx.engine, plan.network)
        # What the rollback disconnects from, and the record, name the network as inspected.
        att = dataclasses.replace(att, network_id=network.id, network_name=network.name)
        attached = verify_attached(ctx, plan, container, network)
        record_attached(ctx, att, attached)
    except BaseException:
        rollback(ctx.engine, ctx.namespaces, ctx.store, att)
        raise
    return attached


def connect(ctx: AddContext, plan: AddPlan, container: Container) -> None:
    request = plan.request
    opts = dict(request.driver_opts)
    if ctx.engine.supports_ifname():
        opts[IFNAME_OPTION] = plan.env.ifname
    ctx.engine.connect(container.id, plan.network.ref, ipv4=request.ipv4, ipv6=request.ipv6,
                       aliases=list(request.aliases), mac=request.mac, driver_opts=opts)


def verify_attached(ctx: AddContext, plan: AddPlan, container: Container, network: Network
                    ) -> Attached:
    """Check, inside CNI_NETNS, that Docker made the interface the runtime asked for."""
    env = plan.env
    after = ctx.engine.container(container.id)
    ep = after.endpoint_in(network.id) if after else None
    if ep is None or not ep.attached:
        raise CNIError(Code.ENGINE_REFUSED, "endpoint missing after connect",
                       f"Docker reported no endpoint of {container.name} in {network.name}")
    with ctx.namespaces.open(plan.target) as ns:
        links = ns.links()
        link = netns.find_link(links, ep.mac, ep.addresses)
        if link is None:
            raise CNIError(Code.INTERFACE_MISMATCH, "endpoint interface not found",
                           f"no interface in {env.netns} carries MAC {ep.mac or '?'} or "
                           f"addresses {ep.addresses} of the Docker endpoint")
        routes = ns.routes(link.index)
        extras = [(lk, ns.routes(lk.index)) for lk in links
                  if lk.name not in plan.links_before and lk.index != link.index]
    attached = Attached(endpoint=ep, link=link, routes=routes, extras=extras)
    check_requested(ctx.engine, plan, attached)
    return attached
