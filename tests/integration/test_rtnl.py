"""cni2cnm.rtnl and cni2cnm.netns against the kernel: namespaces this test creates (no Docker),
read back with iproute2 (`ip -j`) as the independent witness. Needs root."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cni2cnm import netns, rtnl

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                       reason="needs root to create network namespaces"),
    pytest.mark.own_modes,  # no plugin run: the daemon-mode pass skips it
]


def ip(ns: str, *argv: str) -> Any:
    out = subprocess.run(["ip", "-n", ns, "-j", *argv], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return json.loads(out) if out.strip() else []


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    names = (f"c2c-rtnl-{tag}-a", f"c2c-rtnl-{tag}-b")
    try:
        for n in names:
            subprocess.run(["ip", "netns", "add", n], check=True, timeout=10)
        subprocess.run(["ip", "-n", names[0], "link", "add", "c2ct0", "mtu", "1450", "type",
                        "veth", "peer", "name", "c2ct1"], check=True, timeout=10)
        yield names
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False, timeout=10)


def path(name: str) -> str:
    return f"/run/netns/{name}"


def test_links_match_iproute2(two_namespaces: tuple[str, str]) -> None:
    a, _ = two_namespaces
    with netns.Netns(path(a)) as ns:
        links = {lk.name: lk for lk in ns.links()}
    for want in ip(a, "link"):
        got = links[want["ifname"]]
        assert (got.index, got.mtu) == (want["ifindex"], want["mtu"])
        assert got.mac == want.get("address", "")
        assert got.up == ("UP" in want["flags"])
    assert links["c2ct0"].mtu == 1450 and not links["c2ct0"].up


def test_move_configure_read_back_and_rename(two_namespaces: tuple[str, str]) -> None:
    a, b = two_namespaces
    with netns.Netns(path(a)) as src:
        link = src.link_named("c2ct0")
        assert link is not None
        src.move_link(link, path(b), "c2ctmp")
        assert src.link_named("c2ct0") is None
    routes = [
        netns.RouteEntry(dst="0.0.0.0/0", gw="10.250.3.1", oif=0),
        netns.RouteEntry(dst="10.250.9.0/24", gw=None, oif=0, priority=50),
        netns.RouteEntry(dst="fd00:c2c:9::/64", gw="fd00:c2c::1", oif=0),
    ]
    with netns.Netns(path(b)) as dst:
        moved = dst.configure_link("c2ctmp", "eth7", mtu=1400,
                                   addresses=["10.250.3.2/24", "fd00:c2c::2/64"],
                                   routes=routes)
        assert (moved.name, moved.mtu, moved.up, moved.mac) == ("eth7", 1400, True, link.mac)
        assert set(moved.addresses) == {"10.250.3.2/24", "fd00:c2c::2/64"}
        read = {(r.dst, r.gw, r.priority) for r in dst.routes(moved.index)}
    assert read == {("0.0.0.0/0", "10.250.3.1", None), ("10.250.9.0/24", None, 50),
                    ("fd00:c2c:9::/64", "fd00:c2c::1", 1024)}  # the kernel's IPv6 default
    # iproute2 sees the same
    (eth7,) = [x for x in ip(b, "addr") if x["ifname"] == "eth7"]
    assert {(i["local"], i["prefixlen"]) for i in eth7["addr_info"] if i["scope"] == "global"} \
        == {("10.250.3.2", 24), ("fd00:c2c::2", 64)}
    v4 = {(r["dst"], r.get("gateway"), r.get("scope", "global"), r.get("metric"))
          for r in ip(b, "route")}
    assert ("default", "10.250.3.1", "global", None) in v4
    assert ("10.250.9.0/24", None, "link", 50) in v4
    v6 = {(r["dst"], r.get("gateway")) for r in ip(b, "-6", "route")}
    assert ("fd00:c2c:9::/64", "fd00:c2c::1") in v6
    with netns.Netns(path(b)) as dst:
        eth = dst.link_named("eth7")
        assert eth is not None
        dst.rename_link(eth, "eth0")
        renamed = dst.link_named("eth0")
        assert renamed is not None and renamed.index == eth.index and not renamed.up


def test_refusals_are_netns_errors(two_namespaces: tuple[str, str]) -> None:
    a, _ = two_namespaces
    with netns.Netns(path(a)) as ns:
        with pytest.raises(netns.NetnsError, match="did not arrive"):
            ns.configure_link("nosuch0", "eth9", mtu=1500, addresses=[], routes=[])
        link = ns.link_named("c2ct1")
        assert link is not None
        ns.configure_link("c2ct1", "c2ct1", mtu=1500, addresses=["10.250.4.2/24"], routes=[])
        with pytest.raises(netns.NetnsError, match="File exists"):
            ns.configure_link("c2ct1", "c2ct1", mtu=1500, addresses=["10.250.4.2/24"],
                              routes=[])
    with pytest.raises(netns.NetnsError, match="does not exist"), \
            netns.Netns("/run/netns/c2c-rtnl-no-such-namespace"):
        pass


def test_attribute_codec_round_trip() -> None:
    body = rtnl.attr(rtnl.IFLA_IFNAME, b"eth0\0") + rtnl.u32(rtnl.IFLA_MTU, 9000) + \
        rtnl.attr(rtnl.IFLA_ADDRESS, bytes.fromhex("020000000001"))
    got = rtnl.attrs(body)
    assert got[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert int.from_bytes(got[rtnl.IFLA_MTU], sys.byteorder) == 9000
    assert got[rtnl.IFLA_ADDRESS] == bytes.fromhex("020000000001")
    assert len(body) % 4 == 0
    # a truncated attribute ends the parse instead of reading past the message
    assert rtnl.attrs(body[:-3]) == {rtnl.IFLA_IFNAME: b"eth0\0", rtnl.IFLA_MTU: got[4]}
