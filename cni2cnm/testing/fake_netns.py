"""In-memory network namespaces that behave like cni2cnm.netns on a real kernel.

A namespace is one object with an identity (dev, ino); any number of paths name it, as
`/proc/<pid>/ns/net`, a container's SandboxKey and an `ip netns` bind mount name one kernel
namespace. Links carry a name, MAC, MTU, state and addresses; routes are kept per namespace
(only those `netns.Netns.routes` reports: not the kernel's connected-subnet routes).

Moving a link between namespaces works as on the kernel: the link goes down, loses its
addresses and routes, and a name already taken in the target is refused.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field, replace
from types import TracebackType

from cni2cnm import netns
from cni2cnm.netns import Link, NetnsError, RouteEntry

HOST_PATHS = netns.HOST_PATHS
NSFS_DEV = 4  # every namespace file lives on nsfs: one device


@dataclass
class FakeNamespace:
    """One kernel network namespace."""

    ino: int
    links: dict[int, Link] = field(default_factory=dict)
    routes: list[RouteEntry] = field(default_factory=list)
    next_index: int = 1

    @property
    def identity(self) -> tuple[int, int]:
        return NSFS_DEV, self.ino

    def add_link(self, name: str, mac: str = "", mtu: int = 1500, up: bool = True,
                 addresses: tuple[str, ...] = ()) -> Link:
        if any(lk.name == name for lk in self.links.values()):
            raise NetnsError(f"RTNETLINK answers: File exists ({name})")
        link = Link(index=self.next_index, name=name, mac=mac, mtu=mtu, up=up,
                    addresses=tuple(addresses))
        self.links[link.index] = link
        self.next_index += 1
        return link

    def remove_link(self, index: int) -> None:
        self.links.pop(index, None)
        self.routes = [r for r in self.routes if r.oif != index]

    def named(self, name: str) -> Link | None:
        return next((lk for lk in self.links.values() if lk.name == name), None)

    def update(self, link: Link, **changes: object) -> Link:
        new = replace(link, **changes)  # type: ignore[arg-type]
        self.links[link.index] = new
        return new

    def has_default(self, version: int) -> bool:
        default = "0.0.0.0/0" if version == 4 else "::/0"
        return any(r.dst == default for r in self.routes)


def _metric(r: RouteEntry) -> int:
    """The kernel's priority of a route added without one: 0 for IPv4, 1024 for IPv6."""
    return r.priority if r.priority is not None else (1024 if ":" in r.dst else 0)


class FakePinned(netns.Pinned):
    """A fake namespace opened once: it keeps naming that namespace whatever its path names
    later (`FakeNamespaces.paths` rebound, as a bind mount replaced)."""

    def __init__(self, path: str, ns: FakeNamespace | None, ident: tuple[int, int]) -> None:
        self.path = path
        self.fd = -1
        self.identity = ident
        self.ns = ns  # None: the file opened is no network namespace

    def close(self) -> None:
        pass


class FakeNamespaces(netns.Namespaces):
    """The namespaces the plugin may look into, by path. Pass to DockerPlugin(namespaces=)."""

    def __init__(self) -> None:
        self._inodes = itertools.count(4026531000)
        self.paths: dict[str, FakeNamespace] = {}
        self.not_netns: set[str] = set()  # paths that exist but are no network namespace
        self.host = self.create(*HOST_PATHS)
        self.host.add_link("eth0", mac="52:54:00:12:34:56", addresses=("192.168.1.10/24",))
        self.fail_moves: str | None = None  # a NetnsError message for every move_link
        self._pids = itertools.count(1001)  # one node, one PID space, however many engines

    def new_pid(self) -> int:
        return next(self._pids)

    # ---- making and removing ------------------------------------------------------

    def create(self, *paths: str) -> FakeNamespace:
        """A new namespace (with `lo`, as the kernel makes it) under these paths."""
        ns = FakeNamespace(ino=next(self._inodes))
        ns.add_link("lo", mac="00:00:00:00:00:00", mtu=65536, addresses=("127.0.0.1/8",))
        for p in paths:
            self.paths[p] = ns
        return ns

    def bind(self, path: str, existing: str) -> FakeNamespace:
        """`ip netns attach`: one more path for an existing namespace."""
        ns = self.paths[existing]
        self.paths[path] = ns
        return ns

    def unlink(self, path: str) -> None:
        """The path is gone (`ip netns delete`, a process exiting); the namespace lives on
        while another path names it, and with it everything inside."""
        self.paths.pop(path, None)

    def get(self, path: str) -> FakeNamespace:
        ns = self.paths.get(path)
        if ns is None:
            raise NetnsError(f"network namespace {path} does not exist")
        return ns

    # ---- netns.Namespaces ---------------------------------------------------------

    def resolve(self, target: netns.Target) -> FakeNamespace | None:
        """The namespace a path names now, or the one a pinned target holds."""
        if isinstance(target, FakePinned):
            return target.ns
        return self.paths.get(str(target))

    def pin(self, path: str) -> FakePinned:
        ns = self.paths.get(path)
        ident = self.identity(path)
        if ident is None:
            raise NetnsError(f"cannot open network namespace {path}: No such file or "
                             "directory")
        return FakePinned(path, ns, ident)

    def identity(self, target: netns.Target) -> tuple[int, int] | None:
        if isinstance(target, FakePinned):
            return target.identity
        if target in self.not_netns:
            return (1, zlib.crc32(target.encode()))
        ns = self.resolve(target)
        return ns.identity if ns is not None else None

    def is_namespace(self, target: netns.Target) -> bool:
        if isinstance(target, FakePinned):
            return target.ns is not None
        return target in self.paths

    def is_host(self, target: netns.Target) -> bool:
        return self.resolve(target) is self.host

    def open(self, target: netns.Target) -> FakeNetns:
        return FakeNetns(self, target)


class FakeNetns(netns.Netns):
    """An open view of one fake namespace, with the methods of netns.Netns."""

    def __init__(self, spaces: FakeNamespaces, target: netns.Target) -> None:
        super().__init__(target)
        self.spaces = spaces
        self.ns: FakeNamespace | None = None

    def __enter__(self) -> FakeNetns:
        ns = self.spaces.resolve(self.target)
        if ns is None or not self.spaces.is_namespace(self.target):
            raise NetnsError(f"network namespace {self.path} does not exist")
        self.ns = ns
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.ns = None

    @property
    def _ns(self) -> FakeNamespace:
        if self.ns is None:
            raise NetnsError(f"network namespace {self.path} is not open")
        return self.ns

    def links(self) -> list[Link]:
        return sorted(self._ns.links.values(), key=lambda lk: lk.index)

    def link_named(self, name: str) -> Link | None:
        return self._ns.named(name)

    def routes(self, oif: int | None = None) -> list[RouteEntry]:
        return [r for r in self._ns.routes if oif is None or r.oif == oif]

    def move_link(self, link: Link, to: netns.Target, tmp_name: str) -> None:
        if self.spaces.fail_moves:
            raise NetnsError(self.spaces.fail_moves)
        src = self._ns
        target = self.spaces.resolve(to)
        if target is None or link.index not in src.links:
            raise NetnsError(f"cannot move {link.name} from {self.path} to {to}: "
                             "[Errno 2] No such file or directory")
        if target.named(tmp_name) is not None:
            raise NetnsError(f"cannot move {link.name} from {self.path} to {to}: "
                             "[Errno 17] File exists")
        current = src.links[link.index]
        src.remove_link(link.index)
        target.add_link(tmp_name, mac=current.mac, mtu=current.mtu, up=False)

    def configure_link(self, tmp_name: str, name: str, *, mtu: int, addresses: list[str],
                       routes: list[RouteEntry]) -> Link:
        ns = self._ns
        arrived = ns.named(tmp_name)
        if arrived is None:
            raise NetnsError(f"{tmp_name} did not arrive in {self.path}")
        if ns.named(name) is not None:
            raise NetnsError(f"cannot configure {name} in {self.path}: [Errno 17] File exists")
        link = ns.update(arrived, name=name, mtu=mtu, addresses=tuple(addresses), up=True)
        for r in routes:
            # NLM_F_EXCL, as netns.Netns asks: a route to the same destination with the same
            # metric in the main table is refused, whichever interface it goes through.
            if any((old.dst, _metric(old)) == (r.dst, _metric(r)) for old in ns.routes):
                raise NetnsError(f"cannot configure {name} in {self.path}: [Errno 17] File "
                                 "exists")
            ns.routes.append(replace(r, oif=link.index))
        return link

    def rename_link(self, link: Link, name: str) -> None:
        ns = self._ns
        current = ns.links.get(link.index)
        if current is None:
            raise NetnsError(f"cannot rename {link.name} in {self.path}: [Errno 19] No such "
                             "device")
        if ns.named(name) is not None:
            raise NetnsError(f"cannot rename {link.name} in {self.path}: [Errno 17] File exists")
        ns.update(current, name=name, up=False)

    def delete_link(self, link: Link) -> None:
        ns = self._ns
        if link.index not in ns.links:
            raise NetnsError(f"cannot delete {link.name} in {self.path}: [Errno 19] No such "
                             "device")
        ns.remove_link(link.index)
