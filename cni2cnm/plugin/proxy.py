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
from cni2cnm.engine import Container, EngineAPI, SandboxSpec
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.request import EndpointRequest
from cni2cnm.store import Attachment

MIB = 1 << 20

log = logging.getLogger("cni2cnm.proxy")

LABEL_SANDBOX = "io.cni2cnm.sandbox"
LABEL_NETWORK = "io.cni2cnm.network"
LABEL_CONTAINER_ID = "io.cni2cnm.container-id"
LABEL_IFNAME = "io.cni2cnm.ifname"
LABEL_NETNS = "io.cni2cnm.netns"
LABEL_STORE = "io.cni2cnm.store"  # the store-id of the stateDir that made it


class ProxyError(Exception):
    """The sandbox or the interface move failed."""


@dataclass(frozen=True)
class Moved:
    sandbox_ifname: str  # the name Docker gave the interface in the sandbox
    link: netns.Link  # the interface as it is now in CNI_NETNS
    routes: list[netns.RouteEntry]


def sandbox_name(network: str, container_id: str, ifname: str) -> str:
    """Readable and unique: cni2cnm-<network>-<container id prefix>-<ifname>-<hash>.

    Every part goes through one slug: an interface name the spec allows (`net@1`, `ä1`)
    can hold characters Docker refuses in container names. The hash of the raw parts keeps
    names that slug alike apart."""
    digest = hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()[:8]
    return (f"cni2cnm-{_slug(network, 24)}-{_slug(container_id, 12)}-{_slug(ifname, 15)}"
            f"-{digest}")


def _slug(part: str, limit: int) -> str:
    """`part` in the characters Docker allows in a container name ([a-zA-Z0-9_.-])."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", part, flags=re.ASCII)[:limit]


def sandbox_labels(network: str, container_id: str, ifname: str, netns_path: str,
                   store_id: str) -> dict[str, str]:
    return {
        LABEL_SANDBOX: "true",
        LABEL_NETWORK: network,
        LABEL_CONTAINER_ID: container_id,
        LABEL_IFNAME: ifname,
        LABEL_NETNS: netns_path,
        LABEL_STORE: store_id,
    }


def start_sandbox(engine: EngineAPI, name: str, conf: PluginConf, network: str,
                  request: EndpointRequest, labels: dict[str, str]) -> str:
    """A container of the config's sandboxImage, within its limits, whose only network is
    `network`, with the requested endpoint."""
    return engine.run_sandbox(SandboxSpec(
        name=name, image=conf.sandboxImage, network=network, labels=labels, ipv4=request.ipv4,
        ipv6=request.ipv6, aliases=tuple(request.aliases), mac=request.mac,
        driver_opts=dict(request.driver_opts), pids_limit=conf.sandboxPidsLimit,
        memory=conf.sandboxMemoryMiB * MIB,
    ))


def refuse_exited(sandbox: Container, image: str) -> None:
    """A sandbox must keep running: one whose image's command exits is useless."""
    if sandbox.running:
        return
    ended = sandbox.exit
    how = (f"exited with code {ended.exit_code}" + (f" ({ended.error})" if ended.error else "")
           + (", killed for lack of memory" if ended.oom_killed else "")
           if ended is not None else f"is {sandbox.status or 'not running'}")
    raise ProxyError(f"sandbox container {sandbox.name} of image {image} {how} right after "
                     "it started; sandboxImage must be an image whose default command keeps "
                     "running, such as pause (registry.k8s.io/pause:3.10)")


def move_in(namespaces: netns.Namespaces, sandbox: Container, mac: str, addresses: list[str],
            target: netns.Pinned, ifname: str) -> Moved:
    """Move the endpoint's interface from the sandbox into `target` (CNI_NETNS as ADD opened
    it) as `ifname`."""
    tmp = _transit_name()
    with namespaces.open(netns.of_pid(sandbox.pid)) as src:
        link = netns.find_link(src.links(), mac, addresses)
        if link is None:
            raise ProxyError(f"no interface with MAC {mac} in sandbox {sandbox.name}")
        routes = src.routes(link.index)
        src.move_link(link, target, tmp)
    with namespaces.open(target) as dst:
        # A destination the namespace routes already (its primary network's default route,
        # when this is a second network) stays as it is, as Docker does for its own
        # sandboxes; adding it again is refused by the kernel (EEXIST).
        # One route dump, whatever the namespace holds (not one per interface).
        present = {r.dst for r in dst.routes()}
        routes = [r for r in routes if r.dst not in present]
        moved = dst.configure_link(tmp, ifname, mtu=link.mtu, addresses=list(link.addresses),
                                   routes=routes)
        return Moved(sandbox_ifname=link.name, link=moved, routes=dst.routes(moved.index))


def move_back(namespaces: netns.Namespaces, path: str, mac: str, sandbox: Container,
              sandbox_ifname: str, recorded: tuple[int, int] = (0, 0)) -> bool:
    """Return the interface to the sandbox under its original name. False if it is gone, or
    when `path` no longer names the namespace ADD recorded (`recorded`, its identity): the
    namespace is opened once, checked, and only that one is changed."""
    try:
        target = namespaces.pin(path)
    except netns.NetnsError:
        return False
    with target:
        if not namespaces.is_namespace(target):
            return False
        if recorded != (0, 0) and target.identity != recorded:
            log.warning("not moving the interface back from %s: it is no longer the network "
                        "namespace ADD attached", path)
            return False
        return _move_back_from(namespaces, target, mac, sandbox, sandbox_ifname)


def _move_back_from(namespaces: netns.Namespaces, target: netns.Pinned, mac: str,
                    sandbox: Container, sandbox_ifname: str) -> bool:
    tmp = _transit_name()
    with namespaces.open(target) as src:
        link = next((lk for lk in src.links() if lk.mac == mac), None)
        if link is None:
            return False
        src.move_link(link, netns.of_pid(sandbox.pid), tmp)
    with namespaces.open(netns.of_pid(sandbox.pid)) as dst:
        back = dst.link_named(tmp)
        if back is not None:
            dst.rename_link(back, sandbox_ifname or "eth0")
    return True


def _transit_name() -> str:
    """A name no interface in either namespace has, for the moment an interface is moved."""
    return "c2c" + secrets.token_hex(5)


def is_ours(sandbox: Container, att: Attachment) -> bool:
    """A sandbox is this record's only if its labels say so (names can be reused)."""
    labels = sandbox.labels
    return (labels.get(LABEL_SANDBOX) == "true" and labels.get(LABEL_NETWORK) == att.network
            and labels.get(LABEL_CONTAINER_ID) == att.container_id
            and labels.get(LABEL_IFNAME) == att.ifname)


def release(engine: EngineAPI, namespaces: netns.Namespaces, att: Attachment) -> None:
    """DEL of a proxy attachment: interface back (if it still exists), sandbox removed.

    Every already-gone case succeeds: the namespace deleted with the interface in it
    (dockerd then removes the sandbox and releases the address all the same), the
    sandbox container removed by hand, both. A container that is not this record's
    sandbox (by its labels) is never touched.
    """
    ref = att.sandbox_id or att.sandbox_name
    if not ref:
        return
    sandbox = engine.container(ref)
    if sandbox is not None and not is_ours(sandbox, att):
        log.warning("not removing container %s (%s): its labels do not make it the sandbox of "
                    "%s/%s", sandbox.name, sandbox.short_id, att.container_id, att.ifname)
        return
    if sandbox is not None and sandbox.running and sandbox.pid and att.mac and att.netns:
        try:
            move_back(namespaces, att.netns, att.mac, sandbox, att.sandbox_ifname,
                      (att.netns_dev, att.netns_ino))
        except netns.NetnsError as e:
            log.warning("could not move the interface back into %s (%s); removing it anyway",
                        sandbox.name, e)
    if sandbox is not None:
        engine.remove_container(sandbox.id)
    # Whatever did not go back (the sandbox had ended, or the move failed) must not stay in
    # the pod with an address Docker has released.
    remove_moved(namespaces, att)


def remove_moved(namespaces: netns.Namespaces, att: Attachment) -> bool:
    """Delete the interface ADD moved into the pod's namespace, once its sandbox has ended:
    only the link with the recorded name AND MAC, only in the recorded namespace (the path
    must still be the kernel namespace ADD saw). Its veth peer on the bridge goes with it.
    False when there was nothing of ours to delete."""
    if not (att.netns and att.mac and att.interface):
        return False
    try:
        target = namespaces.pin(att.netns)  # opened once: checked and changed as one object
    except netns.NetnsError:
        return False
    with target:
        if not namespaces.is_namespace(target) or (
                (att.netns_dev or att.netns_ino)
                and target.identity != (att.netns_dev, att.netns_ino)):
            log.info("%s is no longer the namespace ADD saw (gone, its interfaces with it, or "
                     "reused): nothing of %s/%s to remove there", att.netns, att.container_id,
                     att.ifname)
            return False
        with namespaces.open(target) as ns:
            link = ns.link_named(att.interface)
            if link is None or link.mac != att.mac:
                log.info("no %s with MAC %s in %s: nothing of %s/%s to remove", att.interface,
                         att.mac, att.netns, att.container_id, att.ifname)
                return False
            ns.delete_link(link)
    log.warning("removed %s (%s) from %s: the proxy sandbox of %s/%s is gone, so Docker no "
                "longer holds its address %s", att.interface, att.mac, att.netns,
                att.container_id, att.ifname, ", ".join(att.ips) or "-")
    return True


def sandbox_ended(engine: EngineAPI, att: Attachment, running: set[str]) -> bool:
    """Whether the record's sandbox no longer runs: not among `running` (one listing of the
    engine's sandboxes), confirmed by inspecting it (it may have started since)."""
    if att.sandbox_id in running:
        return False
    sandbox = engine.container(att.sandbox_id or att.sandbox_name)
    return sandbox is None or not sandbox.running


def running_sandboxes(engine: EngineAPI) -> set[str]:
    """IDs of the proxy sandboxes the engine runs now (one listing)."""
    return {c.id for c in engine.containers_with_label(f"{LABEL_SANDBOX}=true")
            if c.state == "running"}


def labelled_sandboxes(engine: EngineAPI, network: str, store_id: str
                       ) -> list[tuple[str, str, str]]:
    """(container ID of the sandbox, CNI container ID, ifname) of every sandbox of a network
    that the store `store_id` made (sandboxes of other stores are theirs to sweep)."""
    if not store_id:
        return []
    out = []
    for c in engine.containers_with_label(f"{LABEL_NETWORK}={network}"):
        if c.labels.get(LABEL_SANDBOX) == "true" and c.labels.get(LABEL_STORE) == store_id:
            out.append((c.id, c.labels.get(LABEL_CONTAINER_ID, ""),
                        c.labels.get(LABEL_IFNAME, "")))
    return out
