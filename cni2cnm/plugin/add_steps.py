"""The steps ADD takes in both modes (attach.py: container mode, attach_proxy.py: proxy mode):
the intent it records first, the network as inspected after connecting, the check that the
interface is the one the runtime asked for, and the record of what it made."""

from __future__ import annotations

from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.engine import EngineAPI, Network
from cni2cnm.plugin.context import AddContext, AddPlan, Attached
from cni2cnm.store import Attachment


def intent(ctx: AddContext, plan: AddPlan) -> Attachment:
    """The record of what ADD is about to do, before it changes the engine (each mode adds
    its own fields). It carries the identity of the namespace ADD opened: DEL and CHECK
    touch the namespace only while CNI_NETNS still names it."""
    env, conf = plan.env, plan.conf
    dev, ino = ctx.namespaces.identity(plan.target) or (0, 0)
    return Attachment(network=conf.name, container_id=env.container_id, ifname=env.ifname,
                      docker_network=conf.docker_network, network_id=plan.network.id,
                      network_name=plan.network.name, netns=env.netns, netns_dev=dev,
                      netns_ino=ino, docker_host=ctx.engine.base_url)


def visible(engine: EngineAPI, network: Network) -> Network:
    """The network after the connect: on a swarm worker it can be inspected only now."""
    if network.id:
        return network
    found = engine.network(network.name)
    if found is None:
        raise CNIError(Code.ENGINE_REFUSED, "network not visible after connect",
                       f"network {network.name} is still unknown to {engine.shown} after "
                       "connecting to it")
    return found


def check_requested(engine: EngineAPI, plan: AddPlan, attached: Attached) -> None:
    """The interface Docker made is the one the runtime asked for."""
    env, request = plan.env, plan.request
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


def record_attached(ctx: AddContext, att: Attachment, attached: Attached) -> Attachment:
    """The last step: the record becomes "attached", with what ADD verified."""
    return ctx.store.attached(att, endpoint_id=attached.endpoint.endpoint_id,
                              interface=attached.link.name, mac=attached.link.mac,
                              ips=attached.endpoint.addresses)
