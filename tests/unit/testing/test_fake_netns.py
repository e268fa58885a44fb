"""The fake namespaces behave as cni2cnm.netns does on the kernel: identities shared by
every path of one namespace, moves that drop addresses and routes, name clashes refused."""

from __future__ import annotations

import pytest

from cni2cnm.netns import NetnsError, RouteEntry
from cni2cnm.testing import FakeNamespaces


def test_paths_of_one_namespace_share_its_identity() -> None:
    spaces = FakeNamespaces()
    spaces.create("/proc/42/ns/net")
    spaces.bind("/run/netns/a", "/proc/42/ns/net")
    other = spaces.create("/run/netns/b")
    assert spaces.identity("/run/netns/a") == spaces.identity("/proc/42/ns/net")
    assert spaces.identity("/run/netns/b") == other.identity != spaces.identity("/run/netns/a")
    spaces.unlink("/proc/42/ns/net")  # the bind mount keeps it alive
    assert spaces.is_namespace("/run/netns/a") and not spaces.is_namespace("/proc/42/ns/net")
    assert spaces.identity("/proc/42/ns/net") is None


def test_the_host_and_paths_that_are_no_network_namespace() -> None:
    spaces = FakeNamespaces()
    assert spaces.is_host("/proc/self/ns/net") and spaces.is_host("/proc/1/ns/net")
    spaces.not_netns.add("/proc/self/ns/mnt")
    assert spaces.identity("/proc/self/ns/mnt") is not None
    assert not spaces.is_namespace("/proc/self/ns/mnt")
    with pytest.raises(NetnsError), spaces.open("/run/netns/none"):
        pass


def test_a_move_drops_addresses_and_routes_and_configure_restores_them() -> None:
    spaces = FakeNamespaces()
    src = spaces.create("/proc/7/ns/net")
    spaces.create("/run/netns/dst")
    link = src.add_link("eth0", mac="02:42:0a:00:00:02", addresses=("10.0.0.2/24",))
    route = RouteEntry(dst="0.0.0.0/0", gw="10.0.0.1", oif=link.index, table=254, scope=0)
    src.routes.append(route)
    with spaces.open("/proc/7/ns/net") as ns:
        assert ns.routes(link.index) == [route]
        ns.move_link(link, "/run/netns/dst", "c2ctmp")
        assert ns.link_named("eth0") is None and ns.routes(link.index) == []
    with spaces.open("/run/netns/dst") as ns:
        arrived = ns.link_named("c2ctmp")
        assert arrived is not None and arrived.addresses == () and not arrived.up
        moved = ns.configure_link("c2ctmp", "net1", mtu=1400, addresses=["10.0.0.2/24"],
                                  routes=[route])
        assert (moved.name, moved.mtu, moved.addresses, moved.up) == (
            "net1", 1400, ("10.0.0.2/24",), True)
        assert [r.gw for r in ns.routes(moved.index)] == ["10.0.0.1"]
        with pytest.raises(NetnsError, match="File exists"):
            ns.rename_link(moved, "lo")
        with pytest.raises(NetnsError, match="did not arrive"):
            ns.configure_link("c2ctmp", "net2", mtu=1500, addresses=[], routes=[])


def test_a_move_into_a_missing_namespace_fails() -> None:
    spaces = FakeNamespaces()
    src = spaces.create("/proc/7/ns/net")
    link = src.add_link("eth0", mac="02:42:0a:00:00:02")
    with spaces.open("/proc/7/ns/net") as ns, pytest.raises(NetnsError, match="No such"):
        ns.move_link(link, "/run/netns/gone", "c2ctmp")
    assert src.named("eth0") is not None


def test_a_pinned_namespace_stays_the_one_opened() -> None:
    """As an open descriptor on the kernel: rebinding the path later changes nothing."""
    spaces = FakeNamespaces()
    first = spaces.create("/run/netns/a")
    pinned = spaces.pin("/run/netns/a")
    spaces.paths["/run/netns/a"] = spaces.host
    assert spaces.identity(pinned) == first.identity and not spaces.is_host(pinned)
    with spaces.open(pinned) as view:
        assert [lk.name for lk in view.links()] == ["lo"]
    with pytest.raises(NetnsError):
        spaces.pin("/run/netns/none")
