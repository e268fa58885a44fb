"""CHECK: the recorded endpoint, the engine and the namespace still agree with prevResult."""

from __future__ import annotations

from typing import NoReturn

from cni2cnm import netns
from cni2cnm.cni.env import CNIEnv
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.cni.result import Result
from cni2cnm.engine import Endpoint, EngineAPI
from cni2cnm.store import Attachment


def fail_check(details: str) -> NoReturn:
    raise CNIError(Code.CHECK_FAILED, "attachment check failed", details)


def sandbox_gone(att: Attachment) -> str:
    """CHECK's words for a proxy attachment whose sandbox ended (pending.py removed what
    was left in the pod, or CHECK itself did: detach.end_if_sandbox_ended)."""
    return (f"the proxy sandbox {att.sandbox_name or att.sandbox_id[:12]} of "
            f"{att.container_id}/{att.ifname} has ended (stopped, or dockerd restarted without "
            "live-restore) and Docker released its address, so cni2cnm removed "
            f"{att.interface or 'the interface'} from {att.netns or 'the pod'}; DEL and ADD the "
            "pod's network again (recreate the pod)")


def check_attachment(engine: EngineAPI, namespaces: netns.Namespaces, att: Attachment,
                     prev: Result, env: CNIEnv) -> None:
    container = engine.container(att.docker_id)
    what = "sandbox container" if att.mode == "proxy" else "Docker container"
    if container is None:
        fail_check(f"{what} {att.docker_name} ({att.docker_id[:12]}) no longer exists")
    if not container.running:
        fail_check(f"{what} {container.name} is {container.status}")
    ep = container.endpoint_in(att.network_id)
    if ep is None or not ep.attached:
        fail_check(f"{what} {container.name} is not attached to network "
                   f"{att.network_name}")
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
    try:
        target = namespaces.pin(env.netns)
    except netns.NetnsError:
        fail_check(f"network namespace {env.netns} does not exist")
    with target:
        check_interface(namespaces, target, att, prev, ep, env)


def check_interface(namespaces: netns.Namespaces, target: netns.Pinned, att: Attachment,
                    prev: Result, ep: Endpoint, env: CNIEnv) -> None:
    """Inside CNI_NETNS, opened once: still the namespace ADD attached, with the interface,
    its addresses and (proxy mode) its routes."""
    if not namespaces.is_namespace(target):
        fail_check(f"network namespace {env.netns} does not exist")
    recorded = (att.netns_dev, att.netns_ino)
    if recorded != (0, 0) and target.identity != recorded:
        fail_check(f"{env.netns} is no longer the network namespace ADD attached")
    with namespaces.open(target) as ns:
        link = ns.link_named(env.ifname)
        present = ({(r.dst, r.gw) for r in ns.routes(link.index)}
                   if link is not None and att.mode == "proxy" else set())
    if link is None:
        fail_check(f"no interface {env.ifname} in {env.netns}")
    if ep.mac and link.mac != ep.mac:
        fail_check(f"{env.ifname} in {env.netns} has MAC {link.mac}, the endpoint {ep.mac}")
    missing = [a for a in ep.addresses if a not in link.addresses]
    if missing:
        fail_check(f"{env.ifname} in {env.netns} lacks addresses {missing}")
    if att.mode == "proxy":
        check_proxy_routes(prev, ep, present, env)


def check_proxy_routes(prev: Result, ep: Endpoint, present: set[tuple[str, str | None]],
                       env: CNIEnv) -> None:
    """Proxy mode re-created the routes Docker configured: they must still be there."""
    gateways = {g for g in (ep.gateway, ep.ipv6_gateway) if g}
    wanted = [(r.dst, r.gw) for r in prev.routes if r.gw in gateways]
    lost = [f"{dst} via {gw}" for dst, gw in wanted if (dst, gw) not in present]
    if lost:
        fail_check(f"routes missing from {env.ifname} in {env.netns}: {', '.join(lost)}")
