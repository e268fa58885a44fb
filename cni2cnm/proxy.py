"""Proxy sandboxes: a CNM sandbox of cni2cnm's own for a namespace Docker does not own.

ADD runs a small pause container on the Docker network (Docker allocates the endpoint
as for any container), then moves the endpoint's interface from that container's
namespace into CNI_NETNS under CNI_IFNAME and re-creates what the move loses there:
addresses, MTU, link state and the routes Docker configured. DEL moves the interface
back under its original name (when the namespace still exists) and removes the sandbox
container, which releases the address in Docker's IPAM.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

from cni2cnm import netns
from cni2cnm.engine import Container, Engine
from cni2cnm.request import EndpointRequest

log = logging.getLogger("cni2cnm.proxy")

LABEL_SANDBOX = "io.cni2cnm.sandbox"
LABEL_NETWORK = "io.cni2cnm.network"
LABEL_CONTAINER_ID = "io.cni2cnm.container-id"
LABEL_IFNAME = "io.cni2cnm.ifname"
LABEL_NETNS = "io.cni2cnm.netns"


class ProxyError(Exception):
    """The sandbox or the interface move failed."""


@dataclass(frozen=True)
class Moved:
    sandbox_ifname: str  # the name Docker gave the interface in the sandbox
    link: netns.Link  # the interface as it is now in CNI_NETNS
    routes: list[netns.RouteEntry]


def sandbox_name(network: str, container_id: str, ifname: str) -> str:
    """Readable and unique: cni2cnm-<network>-<container id prefix>-<ifname>-<hash>."""
    digest = hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-zA-Z0-9_.-]", "-", network)[:24]
    cid = re.sub(r"[^a-zA-Z0-9_.-]", "-", container_id)[:12]
    return f"cni2cnm-{slug}-{cid}-{ifname}-{digest}"


def sandbox_labels(network: str, container_id: str, ifname: str, netns_path: str
                   ) -> dict[str, str]:
    return {
        LABEL_SANDBOX: "true",
        LABEL_NETWORK: network,
        LABEL_CONTAINER_ID: container_id,
        LABEL_IFNAME: ifname,
        LABEL_NETNS: netns_path,
    }


def start_sandbox(engine: Engine, name: str, image: str, network: str,
                  request: EndpointRequest, labels: dict[str, str]) -> str:
    """A pause container whose only network is `network`, with the requested endpoint."""
    return engine.run_sandbox(
        name, image, network, labels=labels, ipv4=request.ipv4, ipv6=request.ipv6,
        aliases=list(request.aliases), mac=request.mac, driver_opts=request.driver_opts,
    )


def move_in(sandbox: Container, mac: str, addresses: list[str], target: str,
            ifname: str) -> Moved:
    """Move the endpoint's interface from the sandbox into `target` as `ifname`."""
    tmp = "c2c" + secrets.token_hex(5)
    with netns.Netns(f"/proc/{sandbox.pid}/ns/net") as src:
        link = netns.find_link(src.links(), mac, addresses)
        if link is None:
            raise ProxyError(f"no interface with MAC {mac} in sandbox {sandbox.name}")
        routes = src.routes(link.index)
        src.move_link(link, target, tmp)
    with netns.Netns(target) as dst:
        moved = dst.configure_link(tmp, ifname, mtu=link.mtu, addresses=list(link.addresses),
                                   routes=routes)
        return Moved(sandbox_ifname=link.name, link=moved, routes=dst.routes(moved.index))


def move_back(target: str, mac: str, sandbox: Container, sandbox_ifname: str) -> bool:
    """Return the interface to the sandbox under its original name. False if it is gone."""
    if not netns.is_namespace(target):
        return False
    tmp = "c2c" + secrets.token_hex(5)
    with netns.Netns(target) as src:
        link = next((lk for lk in src.links() if lk.mac == mac), None)
        if link is None:
            return False
        src.move_link(link, f"/proc/{sandbox.pid}/ns/net", tmp)
    with netns.Netns(f"/proc/{sandbox.pid}/ns/net") as dst:
        back = dst.link_named(tmp)
        if back is not None:
            dst.rename_link(back, sandbox_ifname or "eth0")
    return True


def release(engine: Engine, sandbox_ref: str, target: str, mac: str, sandbox_ifname: str
            ) -> None:
    """DEL of a proxy attachment: interface back (if it still exists), sandbox removed.

    Every already-gone case succeeds: the namespace deleted with the interface in it
    (dockerd then removes the sandbox and releases the address all the same), the
    sandbox container removed by hand, both.
    """
    if not sandbox_ref:
        return
    sandbox = engine.container(sandbox_ref)
    if sandbox is None:
        return
    if sandbox.running and sandbox.pid and mac and target:
        try:
            move_back(target, mac, sandbox, sandbox_ifname)
        except netns.NetnsError as e:
            log.warning("could not move the interface back into %s (%s); removing it anyway",
                        sandbox.name, e)
    engine.remove_container(sandbox.id)


def labelled_sandboxes(engine: Engine, network: str) -> list[tuple[str, str, str]]:
    """(container ID of the sandbox, CNI container ID, ifname) of every sandbox of a network."""
    out = []
    for c in engine.containers_with_label(f"{LABEL_NETWORK}={network}"):
        labels = c.get("Labels") or {}
        if labels.get(LABEL_SANDBOX) == "true":
            out.append((c["Id"], labels.get(LABEL_CONTAINER_ID, ""), labels.get(LABEL_IFNAME, "")))
    return out
