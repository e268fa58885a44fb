"""Network namespaces: pinning one, telling what a path is (a namespace, which one, the host's),
looking inside and moving links between them (rtnetlink, no shell). `of_pid` is the one place
a process's namespace path is spelled; `Namespaces` is what the plugin is given (tests give it
cni2cnm.testing's fake)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from cni2cnm import rtnl

RTPROT_KERNEL = 2
IFA_F_NODAD = 0x02


class NetnsError(Exception):
    """A namespace could not be opened or read."""


class Pinned:
    """A namespace opened once (CNI_NETNS): its checks and every later step use this
    descriptor (setns on it, IFLA_NET_NS_FD), never the path again, so whatever the path
    names later (a bind mount replaced, a PID reused) is never changed. `str()` of it is
    the path, for messages and records."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        st = os.fstat(fd)
        self.identity: tuple[int, int] = (st.st_dev, st.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Pinned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return self.path


Target = str | Pinned  # a namespace by path (looked up now) or one opened once


def pin(path: str) -> Pinned:
    """Open the namespace file at `path` once; NetnsError when it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except (OSError, ValueError) as e:
        raise NetnsError(f"cannot open network namespace {path}: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    try:
        return Pinned(path, fd)
    except OSError:
        os.close(fd)
        raise


def of_pid(pid: int) -> str:
    """The path of process `pid`'s network namespace (a container's, through its init's pid)."""
    return f"/proc/{pid}/ns/net"


def identity(target: Target) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a namespace; equal for the same kernel namespace.

    `/proc/<pid>/ns/net`, a container's SandboxKey and an `ip netns` bind mount of
    the same namespace all give the same pair. None when the path does not exist.
    """
    if isinstance(target, Pinned):
        return target.identity
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return st.st_dev, st.st_ino


NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type (Linux 4.11)
CLONE_NEWNET = 0x40000000


def is_namespace(target: Target) -> bool:
    """True when it is a live NETWORK namespace: not a leftover `ip netns` file (an empty
    regular file once its bind mount is gone) and not a namespace of another type
    (`/proc/self/ns/mnt` is on nsfs too)."""
    if isinstance(target, Pinned):
        return _is_net(target.fd)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except (OSError, ValueError):
        return False
    try:
        return _is_net(fd)
    finally:
        os.close(fd)


def _is_net(fd: int) -> bool:
    import fcntl

    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


# The node's own network: the namespace this process runs in and PID 1's.
HOST_PATHS = ("/proc/self/ns/net", of_pid(1))


def is_host(target: Target) -> bool:
    """True when it is one of HOST_PATHS' namespaces, which the plugin must never change."""
    ident = identity(target)
    return ident is not None and ident in {identity(p) for p in HOST_PATHS}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str
    mtu: int
    up: bool
    addresses: tuple[str, ...] = ()  # CIDR, link-local IPv6 excluded


@dataclass(frozen=True)
class RouteEntry:
    dst: str
    gw: str | None
    oif: int
    priority: int | None = None
    table: int | None = None
    scope: int | None = None
    mtu: int | None = None
    advmss: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)



def _netlink_in(target: Target) -> rtnl.Rtnl:
    """A netlink socket bound to the namespace.

    A socket belongs to the namespace its thread was in when it was made: this thread
    enters the namespace (setns), opens the socket and returns at once, without forking.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _descriptor(target) as fd:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            try:
                return rtnl.Rtnl()
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # never leave this thread elsewhere
                    err = ctypes.get_errno()
                    raise RuntimeError(f"cannot return to the original network namespace: "
                                       f"{os.strerror(err)}")
    finally:
        os.close(own)


@contextlib.contextmanager
def _descriptor(target: Target) -> Iterator[int]:
    """The pinned namespace's own descriptor, or the path opened for the moment."""
    if isinstance(target, Pinned):
        yield target.fd
        return
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def find_link(links: list[Link], mac: str, addresses: list[str]) -> Link | None:
    """The link carrying an endpoint: by MAC, or by its addresses (remote CNM drivers may
    report no MAC)."""
    if mac:
        for lk in links:
            if lk.mac == mac:
                return lk
    for lk in links:
        if addresses and all(a in lk.addresses for a in addresses):
            return lk
    return None


class Netns:
    """An open view of one network namespace: `with Netns(target) as ns: ns.links()`."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.path = str(target)
        self._ipr: rtnl.Rtnl | None = None

    def __enter__(self) -> Netns:
        if not isinstance(self.target, Pinned) and not os.path.exists(self.path):
            raise NetnsError(f"network namespace {self.path} does not exist")
        try:
            self._ipr = _netlink_in(self.target)
        except (OSError, RuntimeError) as e:
            raise NetnsError(f"cannot open network namespace {self.path}: {e}") from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def _nl(self) -> rtnl.Rtnl:
        if self._ipr is None:
            raise NetnsError(f"network namespace {self.path} is not open")
        return self._ipr

    def links(self) -> list[Link]:
        try:
            raw_links = self._nl.links()
            raw_addrs = self._nl.addresses()
        except OSError as e:
            raise NetnsError(f"cannot read interfaces in {self.path}: {e}") from None
        addrs: dict[int, list[str]] = {}
        for a in raw_addrs:
            iface = ipaddress.ip_interface(f"{a.address}/{a.prefixlen}")
            if iface.version == 6 and iface.ip.is_link_local:
                continue
            addrs.setdefault(a.index, []).append(str(iface))
        return [Link(index=m.index, name=m.name, mac=m.mac, mtu=m.mtu,
                     up=bool(m.flags & rtnl.IFF_UP), addresses=tuple(addrs.get(m.index, ())))
                for m in raw_links]

    def link_named(self, name: str) -> Link | None:
        return next((lk for lk in self.links() if lk.name == name), None)

    def routes(self, oif: int | None = None) -> list[RouteEntry]:
        """Routes through the interface (None: through every interface) in the main table,
        without the kernel's own connected-subnet and IPv6 link-local routes (those come
        with the address). One dump of the namespace's routes, whatever it holds."""
        try:
            raw = self._nl.routes(socket.AF_UNSPEC)
        except OSError as e:
            raise NetnsError(f"cannot read routes in {self.path}: {e}") from None
        out: list[RouteEntry] = []
        for r in raw:
            if ((oif is not None and r.oif != oif) or r.oif is None
                    or r.family not in (socket.AF_INET, socket.AF_INET6)
                    or r.type != rtnl.RTN_UNICAST or r.proto == RTPROT_KERNEL
                    or r.table != rtnl.RT_TABLE_MAIN):
                continue
            zero = "0.0.0.0" if r.family == socket.AF_INET else "::"
            net = ipaddress.ip_network(f"{r.dst or zero}/{r.dst_len}", strict=False)
            if net.version == 6 and (net.is_link_local or net.is_multicast):
                continue
            out.append(RouteEntry(
                dst=str(net), gw=r.gateway, oif=r.oif, priority=r.priority,
                table=rtnl.RT_TABLE_MAIN, scope=r.scope,
                mtu=r.metrics.get(rtnl.RTAX_MTU), advmss=r.metrics.get(rtnl.RTAX_ADVMSS)))
        return out

    # ---- moving a link between namespaces --------------------------------------
    # A move drops the link's addresses and routes and needs the link down; names are
    # swapped through a temporary name so that neither namespace ever sees a clash.

    def move_link(self, link: Link, target: Target, tmp_name: str) -> None:
        try:
            self._nl.set_link(link.index, up=False)
            self._nl.set_link(link.index, name=tmp_name)
            with _descriptor(target) as fd:
                self._nl.set_link(link.index, netns_fd=fd)
        except OSError as e:
            raise NetnsError(f"cannot move {link.name} from {self.path} to {target}: "
                             f"{e}") from None

    def configure_link(self, tmp_name: str, name: str, *, mtu: int, addresses: list[str],
                       routes: list[RouteEntry]) -> Link:
        """Rename an arrived link, set MTU and addresses, bring it up, add the routes."""
        nl = self._nl
        try:
            arrived = next((lk for lk in nl.links() if lk.name == tmp_name), None)
            if arrived is None:
                raise NetnsError(f"{tmp_name} did not arrive in {self.path}")
            index = arrived.index
            nl.set_link(index, name=name, mtu=mtu)
            for cidr in addresses:
                iface = ipaddress.ip_interface(cidr)
                family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
                broadcast = (str(iface.network.broadcast_address)
                             if iface.version == 4 and iface.network.prefixlen < 31 else None)
                nl.add_address(index, family, str(iface.ip), iface.network.prefixlen,
                               flags=IFA_F_NODAD if iface.version == 6 else 0,
                               broadcast=broadcast)
            nl.set_link(index, up=True)
            for r in routes:
                net = ipaddress.ip_network(r.dst)
                nl.add_route(socket.AF_INET if net.version == 4 else socket.AF_INET6,
                             str(net.network_address), net.prefixlen, oif=index,
                             gateway=r.gw, priority=r.priority)
        except OSError as e:
            raise NetnsError(f"cannot configure {name} in {self.path}: {e}") from None
        link = self.link_named(name)
        if link is None:
            raise NetnsError(f"{name} vanished from {self.path}")
        return link

    def rename_link(self, link: Link, name: str) -> None:
        try:
            self._nl.set_link(link.index, up=False)
            self._nl.set_link(link.index, name=name)
        except OSError as e:
            raise NetnsError(f"cannot rename {link.name} in {self.path}: {e}") from None

    def delete_link(self, link: Link) -> None:
        """Delete the link (a veth's peer goes with it)."""
        try:
            self._nl.delete_link(link.index)
        except OSError as e:
            raise NetnsError(f"cannot delete {link.name} in {self.path}: {e}") from None


class Namespaces:
    """The host's namespaces, as the plugin sees them. The plugin takes an instance (unit
    tests give it cni2cnm.testing's in-memory one) instead of calling this module."""

    def pin(self, path: str) -> Pinned:
        """Open the namespace at `path` once (see Pinned); NetnsError when it cannot be."""
        return pin(path)

    def identity(self, target: Target) -> tuple[int, int] | None:
        return identity(target)

    def is_namespace(self, target: Target) -> bool:
        return is_namespace(target)

    def is_host(self, target: Target) -> bool:
        return is_host(target)

    def open(self, target: Target) -> Netns:
        """`with namespaces.open(target) as ns:`; NetnsError when it cannot be opened."""
        return Netns(target)


SYSTEM = Namespaces()
