"""A small rtnetlink client on the standard library's AF_NETLINK sockets.

cni2cnm needs a handful of route-netlink requests: dump links, addresses and routes; set a
link's name, MTU, state or namespace; add an address; add a route. pyroute2 offers all of
that and much more, but importing it costs ~130 ms, which every ADD would pay. This module
speaks the wire format directly (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
linux/if_addr.h) and imports nothing outside the standard library.

Messages are nlmsghdr + a fixed family header + rtattrs, each 4-byte aligned. Requests ask
for an ACK; the kernel answers NLMSG_ERROR with error 0 (done) or -errno (raised as OSError).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_NET_NS_FD = 28

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_METRICS = 8
RTA_TABLE = 15
RTAX_MTU = 2
RTAX_ADVMSS = 8

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope,
# type, flags
_RTATTR = struct.Struct("=HH")  # len, type
_U32 = struct.Struct("=I")
_ERRNO = struct.Struct("=i")


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One rtattr, padded."""
    raw = _RTATTR.pack(_RTATTR.size + len(data), kind) + data
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The rtattrs of a message body from `offset` (the last of a repeated type wins)."""
    out: dict[int, bytes] = {}
    end = len(data)
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            break
        out[kind & 0x3FFF] = data[offset + _RTATTR.size:offset + length]  # no NLA_F_ flags
        offset += _align(length)
    return out


def _cstr(raw: bytes | None) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw else ""


def _mac(raw: bytes | None) -> str:
    return ":".join(f"{b:02x}" for b in raw) if raw else ""


def _ip(family: int, raw: bytes | None) -> str | None:
    return socket.inet_ntop(family, raw) if raw else None


def _u32(raw: bytes | None) -> int | None:
    return _U32.unpack(raw[:4])[0] if raw and len(raw) >= 4 else None


@dataclass(frozen=True)
class LinkMsg:
    index: int
    name: str
    mac: str
    mtu: int
    flags: int


@dataclass(frozen=True)
class AddrMsg:
    index: int
    family: int
    address: str
    prefixlen: int


@dataclass(frozen=True)
class RouteMsg:
    family: int
    dst: str | None
    dst_len: int
    gateway: str | None
    oif: int | None
    priority: int | None
    table: int
    proto: int
    scope: int
    type: int
    metrics: dict[int, int] = field(default_factory=dict)


class Rtnl:
    """A route-netlink socket of the namespace the calling thread is in when it is made."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        try:
            self.sock.bind((0, 0))
        except OSError:
            self.sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ---------------------------------------------------------------

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq += 1
        msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST,
                             self._seq, 0) + body
        self.sock.sendto(msg, (0, 0))
        return self._seq

    def _replies(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(type, flags, body) of the kernel's answers to request `seq`, up to the end."""
        while True:
            data = self.sock.recv(1 << 18)  # a dump datagram is at most ~32 KiB
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise OSError(f"malformed netlink message (length {length})")
                body = data[offset + _NLMSGHDR.size:offset + length]
                offset += _align(length)
                if mseq != seq:
                    continue  # an answer to an earlier, abandoned request
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    errno = -_ERRNO.unpack_from(body)[0]
                    if errno:
                        raise OSError(errno, os.strerror(errno))
                    return
                yield kind, flags, body
                if not flags & NLM_F_MULTI:
                    return

    def request(self, kind: int, body: bytes, flags: int = 0) -> None:
        """Send a change and wait for the kernel's ACK; OSError when it refuses."""
        for _ in self._replies(self._send(kind, flags | NLM_F_ACK, body)):
            pass

    def dump(self, kind: int, header: struct.Struct, request: bytes, answer: int
             ) -> Iterator[tuple[tuple[int, ...], dict[int, bytes]]]:
        """A dump request: (fixed header fields, attributes) of each `answer` message."""
        for mkind, _flags, body in self._replies(self._send(kind, NLM_F_DUMP, request)):
            if mkind == answer:
                yield header.unpack_from(body), attrs(body, header.size)

    # ---- reading ----------------------------------------------------------------

    def links(self) -> list[LinkMsg]:
        request = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return [LinkMsg(index=index, name=_cstr(a.get(IFLA_IFNAME)), mac=_mac(a.get(IFLA_ADDRESS)),
                        mtu=_u32(a.get(IFLA_MTU)) or 0, flags=flags)
                for (_fam, _type, index, flags, _change), a
                in self.dump(RTM_GETLINK, _IFINFOMSG, request, RTM_NEWLINK)]

    def addresses(self) -> list[AddrMsg]:
        out = []
        request = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for (family, prefixlen, _flags, _scope, index), a in self.dump(
                RTM_GETADDR, _IFADDRMSG, request, RTM_NEWADDR):
            ip = _ip(family, a.get(IFA_LOCAL) or a.get(IFA_ADDRESS))
            if ip:
                out.append(AddrMsg(index=index, family=family, address=ip, prefixlen=prefixlen))
        return out

    def routes(self, family: int) -> list[RouteMsg]:
        out = []
        request = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        for (fam, dst_len, _src, _tos, table, proto, scope, rtype, _flags), a in self.dump(
                RTM_GETROUTE, _RTMSG, request, RTM_NEWROUTE):
            metrics = {k: v for k, raw in attrs(a.get(RTA_METRICS, b"")).items()
                       if (v := _u32(raw)) is not None}
            out.append(RouteMsg(
                family=fam, dst=_ip(fam, a.get(RTA_DST)), dst_len=dst_len,
                gateway=_ip(fam, a.get(RTA_GATEWAY)), oif=_u32(a.get(RTA_OIF)),
                priority=_u32(a.get(RTA_PRIORITY)), table=_u32(a.get(RTA_TABLE)) or table,
                proto=proto, scope=scope, type=rtype, metrics=metrics))
        return out

    # ---- changing ---------------------------------------------------------------

    def set_link(self, index: int, *, up: bool | None = None, name: str | None = None,
                 mtu: int | None = None, netns_fd: int | None = None) -> None:
        flags = change = 0
        if up is not None:
            flags, change = (IFF_UP if up else 0), IFF_UP
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if name is not None:
            body += attr(IFLA_IFNAME, name.encode() + b"\0")
        if mtu is not None:
            body += u32(IFLA_MTU, mtu)
        if netns_fd is not None:
            body += u32(IFLA_NET_NS_FD, netns_fd)
        self.request(RTM_NEWLINK, body)

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    def add_address(self, index: int, family: int, address: str, prefixlen: int, *,
                    flags: int = 0, broadcast: str | None = None) -> None:
        raw = socket.inet_pton(family, address)
        body = _IFADDRMSG.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
        if broadcast:
            body += attr(IFA_BROADCAST, socket.inet_pton(family, broadcast))
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)

    def add_route(self, family: int, dst: str, dst_len: int, *, oif: int,
                  gateway: str | None = None, priority: int | None = None) -> None:
        # iproute2's defaults: IPv4 routes without a gateway have link scope.
        scope = (RT_SCOPE_LINK if family == socket.AF_INET and not gateway
                 else RT_SCOPE_UNIVERSE)
        body = _RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope,
                           RTN_UNICAST, 0)
        if dst_len:
            body += attr(RTA_DST, socket.inet_pton(family, dst))
        if gateway:
            body += attr(RTA_GATEWAY, socket.inet_pton(family, gateway))
        body += u32(RTA_OIF, oif)
        if priority is not None:
            body += u32(RTA_PRIORITY, priority)
        self.request(RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL)
