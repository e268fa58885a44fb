"""Static addresses Docker would refuse are refused before connecting
(preflight.refuse_unusable_addresses); what gets past them, the engine refuses."""

from __future__ import annotations

import pytest

from cni2cnm.engine.versions import API_CONNECT_VALIDATES_IP, RELEASES

from .conftest import World, netns


def ask(world: World, *ips: str) -> dict[str, object]:
    return world.conf(capabilities={"ips": True}, runtimeConfig={"ips": list(ips)})


@pytest.mark.parametrize(("ip", "why"), [
    ("10.99.99.99/24", "does not belong to any subnet"),
    ("10.240.0.0", "network or broadcast address"),
    ("10.240.0.255", "network or broadcast address"),
    ("10.240.0.1", "is the gateway of network pods"),
    ("fd00::5", "no configured IPv6 subnet"),
])
def test_refused_before_connecting(world: World, ip: str, why: str) -> None:
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=ask(world, ip))
    assert why in out.error(7)["details"]
    assert world.engine.called("connect") == [] and world.engine.called("disconnect") == []
    assert world.networks_of(pod.id) == ["none"] and world.records() == []


def test_taken_address_names_its_owner(world: World) -> None:
    first = world.pod("first")
    taken = world.add(first)["ips"][0]["address"]
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=ask(world, taken))
    details = out.error(7)["details"]
    assert f"{taken.split('/')[0]} is already in use" in details and "first" in details
    assert world.networks_of(pod.id) == ["none"]
    assert [r.docker_id for r in world.records()] == [first.id]


def test_static_address_granted(world: World) -> None:
    pod = world.pod()
    res = world.run("ADD", pod.id, netns(pod), conf=ask(world, "10.240.0.77/24")).ok()
    assert res["ips"][0]["address"] == "10.240.0.77/24"
    assert world.inspect(pod.id).endpoints["pods"].ipv4 == "10.240.0.77/24"


@pytest.mark.parametrize("api", [RELEASES["20.10"].api, RELEASES["28"].api])
def test_default_bridge_refuses_static_addresses_and_leaves_nothing(world: World,
                                                                    api: tuple[int, int]) -> None:
    # The default bridge lists its subnet but has no user-configured one: dockerd refuses,
    # and 20.10 leaves a stale entry that the rollback clears.
    world.engine.api = api
    world.net_name = "bridge"
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=ask(world, "172.17.0.50"))
    assert "supported on user defined networks only" in out.error(7)["details"]
    after = world.inspect(pod.id)
    assert list(after.endpoints) == ["none"] and world.records() == []
    cleared = len(world.engine.called("connect")) == 3  # failed, plain, none again
    assert cleared == (api < API_CONNECT_VALIDATES_IP)


def test_address_taken_behind_the_plugin_s_back(world: World) -> None:
    # The network listed the address as free, then someone took it: dockerd says 403.
    pod = world.pod()
    other = world.pod("other", network_mode="pods")
    net = world.engine.networks[world.engine.network("pods").id]  # type: ignore[union-attr]
    real = world.engine.network

    def network_hiding_members(ref: str):  # type: ignore[no-untyped-def]
        found = real(ref)
        return found if found is None else type(found)(**{**found.__dict__, "members": ()})

    world.engine.network = network_hiding_members  # type: ignore[method-assign]
    taken = world.inspect(other.id).endpoints["pods"].ipv4
    assert taken is not None and net.used
    out = world.run("ADD", pod.id, netns(pod), conf=ask(world, taken))
    assert "Address already in use" in out.error(7)["details"]
    assert list(world.inspect(pod.id).endpoints) == ["none"] and world.records() == []


def test_overlay_address_in_use_times_out(world: World) -> None:
    world.engine.role = "manager"
    world.engine.add_overlay("ovl")
    world.net_name = "ovl"
    first = world.pod("first")
    world.add(first)
    real = world.engine.network
    world.engine.network = lambda ref: (  # type: ignore[method-assign]
        None if (n := real(ref)) is None else type(n)(**{**n.__dict__, "members": ()}))
    pod = world.pod()
    out = world.run("ADD", pod.id, netns(pod), conf=ask(world, "10.70.0.2"))
    details = out.error(7)["details"]
    assert "context deadline exceeded" in details and "another node" in details
    assert list(world.inspect(pod.id).endpoints) == ["none"]
    assert [r.docker_id for r in world.records()] == [first.id]
