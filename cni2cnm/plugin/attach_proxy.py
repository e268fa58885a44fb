"""Proxy mode: a sandbox container of our own on the network, its interface moved into
CNI_NETNS (see proxy.py for the sandbox and the move)."""

from __future__ import annotations

import time

from cni2cnm import netns
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.plugin import proxy
from cni2cnm.plugin.attach import (
    check_requested,
    netns_identity,
    record_attached,
    undone_on_failure,
)
from cni2cnm.plugin.context import AddContext, Attached
from cni2cnm.plugin.preflight import visible
from cni2cnm.store import ADDING, Attachment
from cni2cnm.testhook import stop_point


def add_proxy(ctx: AddContext) -> Attached:
    env, conf, engine, store = ctx.env, ctx.conf, ctx.engine, ctx.store
    name = proxy.sandbox_name(conf.name, env.container_id, env.ifname)
    att = store.put(Attachment(
        network=conf.name, container_id=env.container_id, ifname=env.ifname,
        state=ADDING, mode="proxy", docker_network=conf.docker_network,
        network_id=ctx.network.id, network_name=ctx.network.name, docker_name=name,
        sandbox_name=name, netns=env.netns, docker_host=engine.base_url,
        **netns_identity(ctx),
    ))
    with undone_on_failure(engine, ctx.namespaces, store, att):
        stop_point(ctx.environ, "after-intent")
        labels = proxy.sandbox_labels(conf.name, env.container_id, env.ifname, env.netns,
                                      store.identity())
        att.docker_id = att.sandbox_id = proxy.start_sandbox(
            engine, name, conf, ctx.network.name, ctx.request, labels)
        store.put(att)
        stop_point(ctx.environ, "after-connect")
        try:
            attached = _move_endpoint_in(ctx, att)
        except Exception:
            name_an_exited_sandbox(ctx, att)
            raise
        record_attached(ctx, att, attached)
    return attached


def name_an_exited_sandbox(ctx: AddContext, att: Attachment, settle: float = 3.0) -> None:
    """A sandbox whose command exits can die at any step: say that (ProxyError), not the
    symptom. dockerd reports the exit a moment after the process is gone, so while the
    sandbox still shows as running without its process, ask again for a few seconds."""
    deadline = time.monotonic() + settle
    while True:
        sandbox = ctx.engine.container(att.sandbox_id)
        if sandbox is None:
            return
        proxy.refuse_exited(sandbox, ctx.conf.sandboxImage)
        alive = sandbox.pid and ctx.namespaces.is_namespace(netns.of_pid(sandbox.pid))
        if alive or time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def _move_endpoint_in(ctx: AddContext, att: Attachment) -> Attached:
    engine, env = ctx.engine, ctx.env
    ctx.network = network = visible(engine, ctx.network)
    att.network_id, att.network_name = network.id, network.name
    sandbox = engine.container(att.sandbox_id)
    if sandbox is not None:
        proxy.refuse_exited(sandbox, ctx.conf.sandboxImage)
    ep = sandbox.endpoint_in(network.id) if sandbox else None
    if sandbox is None or ep is None or not ep.attached:
        raise CNIError(Code.ENGINE_REFUSED, "sandbox has no endpoint",
                       f"sandbox container {att.sandbox_name} did not get an endpoint in "
                       f"{network.name}")
    att.mac = ep.mac
    ctx.store.put(att)
    moved = proxy.move_in(ctx.namespaces, sandbox, ep.mac, ep.addresses, ctx.target,
                          env.ifname)
    att.sandbox_ifname = moved.sandbox_ifname
    attached = Attached(endpoint=ep, link=moved.link, routes=moved.routes)
    check_requested(ctx, attached)
    return attached
