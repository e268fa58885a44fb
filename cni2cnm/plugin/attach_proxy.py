"""Proxy mode ADD: a sandbox container of our own on the network, its interface moved into
CNI_NETNS (see proxy.py for the sandbox and the move); anything failing on the way is
rolled back (detach.rollback)."""

from __future__ import annotations

import dataclasses
import time

from cni2cnm import netns
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.engine import Container, Endpoint, Network
from cni2cnm.plugin import proxy
from cni2cnm.plugin.add_steps import check_requested, intent, record_attached, visible
from cni2cnm.plugin.context import AddContext, AddPlan, Attached
from cni2cnm.plugin.detach import rollback
from cni2cnm.store import Attachment
from cni2cnm.testhook import stop_point


def add_proxy(ctx: AddContext, plan: AddPlan) -> Attached:
    """Record the intent, start the sandbox, move its interface in, verify, record; rolled
    back on any failure."""
    env, conf = plan.env, plan.conf
    name = proxy.sandbox_name(conf.name, env.container_id, env.ifname)
    att = ctx.store.record_intent(dataclasses.replace(
        intent(ctx, plan), mode="proxy", docker_name=name, sandbox_name=name))
    try:
        stop_point(ctx.environ, "after-intent")
        labels = proxy.sandbox_labels(conf.name, env.container_id, env.ifname, env.netns,
                                      ctx.store.identity())
        att = ctx.store.connected(att, proxy.start_sandbox(
            ctx.engine, name, conf, plan.network.name, plan.request, labels))
        stop_point(ctx.environ, "after-connect")
        try:
            sandbox, endpoint, network = _sandbox_endpoint(ctx, plan, att)
            att = ctx.store.moving(att, network.id, network.name, endpoint.mac)
            moved = proxy.move_in(ctx.namespaces, sandbox, endpoint.mac, endpoint.addresses,
                                  plan.target, env.ifname)
            # Known from here on: the rollback moves the interface back under this name.
            att = dataclasses.replace(att, sandbox_ifname=moved.sandbox_ifname)
            attached = Attached(endpoint=endpoint, link=moved.link, routes=moved.routes)
            check_requested(ctx.engine, plan, attached)
            # Verified: should even the write of "attached" fail, the rollback deletes an
            # interface that did not go back by the name and MAC the move gave it.
            att = dataclasses.replace(att, interface=moved.link.name, mac=moved.link.mac,
                                      ips=list(endpoint.addresses))
        except Exception:
            name_an_exited_sandbox(ctx, plan, att)
            raise
        record_attached(ctx, att, attached)
    except BaseException:
        rollback(ctx.engine, ctx.namespaces, ctx.store, att)
        raise
    return attached


def name_an_exited_sandbox(ctx: AddContext, plan: AddPlan, att: Attachment,
                           settle: float = 3.0) -> None:
    """A sandbox whose command exits can die at any step: say that (ProxyError), not the
    symptom. dockerd reports the exit a moment after the process is gone, so while the
    sandbox still shows as running without its process, ask again for a few seconds."""
    deadline = time.monotonic() + settle
    while True:
        sandbox = ctx.engine.container(att.sandbox_id)
        if sandbox is None:
            return
        proxy.refuse_exited(sandbox, plan.conf.sandboxImage)
        alive = sandbox.pid and ctx.namespaces.is_namespace(netns.of_pid(sandbox.pid))
        if alive or time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def _sandbox_endpoint(ctx: AddContext, plan: AddPlan, att: Attachment
                      ) -> tuple[Container, Endpoint, Network]:
    """The sandbox, its endpoint and the network as inspected after the connect."""
    engine = ctx.engine
    network = visible(engine, plan.network)
    sandbox = engine.container(att.sandbox_id)
    if sandbox is not None:
        proxy.refuse_exited(sandbox, plan.conf.sandboxImage)
    ep = sandbox.endpoint_in(network.id) if sandbox else None
    if sandbox is None or ep is None or not ep.attached:
        raise CNIError(Code.ENGINE_REFUSED, "sandbox has no endpoint",
                       f"sandbox container {att.sandbox_name} did not get an endpoint in "
                       f"{network.name}")
    return sandbox, ep, network
