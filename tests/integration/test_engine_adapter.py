"""cni2cnm's engine adapter (cni2cnm.engine.Engine) against the real dockerd: the typed models
it builds from inspect, and dockerd's refusals classified into the error types the plugin
maps to CNI codes. These are the facts the unit tests' fake engine imitates."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from c2ctest import network_subnets, pause_container, unique_name

from cni2cnm.engine import (
    AddressInUse,
    AlreadyExists,
    Engine,
    EngineConfigError,
    EngineUnavailable,
    InvalidRequest,
    NotConnected,
    NotFound,
    Rejected,
    SandboxSpec,
    TLSSettings,
)

pytestmark = pytest.mark.own_modes  # no plugin runs here: nothing to repeat through a daemon


@pytest.fixture
def eng(docker_host: str) -> Iterator[Engine]:
    e = Engine(docker_host, timeout=30)
    yield e
    e.close()


def nth_host(subnet: str, n: int) -> str:
    return str(ipaddress.ip_network(subnet).network_address + n)


def test_api_version_and_features(eng: Engine, docker_client: Any) -> None:
    want = tuple(int(x) for x in docker_client.api.api_version.split("."))
    assert eng.api_version() == want
    assert eng.supports_ifname() == (want >= (1, 48))
    assert eng.supports_mac_on_connect() == (want >= (1, 54))


def test_container_and_network_models(eng: Engine, resources: Any, images: Any, net: Any
                                      ) -> None:
    pod = pause_container(resources, images)
    c = eng.container(pod.name)
    assert c is not None and c.id == pod.id and c.running and c.pid > 0
    assert c.network_mode == "none" and list(c.endpoints) == ["none"]
    assert c.image == images.pause and c.exit is None
    eng.disconnect(pod.id, "none")
    subnet = network_subnets(net)[0]
    eng.connect(pod.id, net.name, ipv4=nth_host(subnet, 9), aliases=["web"])
    c = eng.container(pod.id)
    assert c is not None
    ep = c.endpoint_in(net.id)
    assert ep is not None and ep.attached and ep.ipv4 == f"{nth_host(subnet, 9)}/24"
    assert ep.gateway == nth_host(subnet, 1) and "web" in ep.aliases
    network = eng.network(net.name)
    assert network is not None and network.id == net.id and network.driver == "bridge"
    [member] = network.members
    assert (member.container_id, member.name, member.endpoint_id) == (pod.id, pod.name,
                                                                     ep.endpoint_id)
    assert member.ipv4 == ep.ipv4 and member.mac == ep.mac
    assert [s.subnet for s in network.subnets] == [subnet]
    assert eng.container("c2ct-no-such-container") is None
    assert eng.network("c2ct-no-such-network") is None


def test_refusals_are_typed(eng: Engine, resources: Any, images: Any, net: Any) -> None:
    pod = pause_container(resources, images)
    subnet = network_subnets(net)[0]
    # A container on `none` cannot join another network: dockerd's 400, a plain Rejected.
    with pytest.raises(Rejected) as e:
        eng.connect(pod.id, net.name)
    assert type(e.value) is Rejected
    eng.disconnect(pod.id, "none")
    with pytest.raises(InvalidRequest):
        eng.connect(pod.id, net.name, ipv4="10.255.255.9")
    other = pause_container(resources, images)
    eng.disconnect(other.id, "none")
    eng.connect(other.id, net.name, ipv4=nth_host(subnet, 20))
    with pytest.raises(AddressInUse):
        eng.connect(pod.id, net.name, ipv4=nth_host(subnet, 20))
    eng.connect(pod.id, net.name)
    with pytest.raises(AlreadyExists):
        eng.connect(pod.id, net.name)
    eng.disconnect(pod.id, net.name)
    with pytest.raises(NotConnected):
        eng.disconnect(pod.id, net.name)
    with pytest.raises(NotFound):
        eng.connect("c2ct-no-such-container", net.name)
    with pytest.raises(NotFound):
        eng.connect(pod.id, "c2ct-no-such-network")
    # Force-disconnect of a container dockerd does not know: NotFound, so the plugin can
    # fall back to the recorded name.
    with pytest.raises(NotFound):
        eng.disconnect("c2ct-no-such-container", net.name, force=True)


def test_sandbox_is_hardened_and_labelled(eng: Engine, resources: Any, images: Any, net: Any,
                                          docker_client: Any) -> None:
    name = unique_name("sandbox")
    resources.add_cleanup(lambda: eng.remove_container(name))
    subnet = network_subnets(net)[0]
    cid = eng.run_sandbox(SandboxSpec(name=name, image=images.pause, network=net.name,
                                      labels={"c2ct.test": "yes"}, ipv4=nth_host(subnet, 30)))
    raw = docker_client.api.inspect_container(cid)
    host = raw["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"] and raw["State"]["Running"]
    [listed] = eng.containers_with_label("c2ct.test=yes")
    assert (listed.id, listed.name, listed.labels["c2ct.test"]) == (cid, name, "yes")
    c = eng.container(cid)
    assert c is not None and c.labels["c2ct.test"] == "yes"
    assert c.endpoint_in(net.id) is not None
    assert eng.remove_container(cid) is True and eng.remove_container(cid) is False


def test_exited_container_reports_how_it_ended(eng: Engine, resources: Any, images: Any
                                               ) -> None:
    c = resources.container(images.busybox, command=["sh", "-c", "exit 3"])
    c.wait(timeout=30)
    seen = eng.container(c.id)
    assert seen is not None and not seen.running and seen.exit is not None
    assert seen.exit.exit_code == 3


def test_images_by_name_and_by_id(eng: Engine, images: Any, docker_client: Any) -> None:
    image_id = docker_client.images.get(images.pause).id  # sha256:...
    assert eng.has_image(images.pause) and eng.has_image(image_id)
    eng.ensure_image(image_id)  # present: no pull (this engine has no registry)
    assert not eng.has_image("c2ct-no-such-image:1")


def test_unreachable_engine_and_unusable_tls(tmp_path: Any) -> None:
    down = Engine(f"unix://{tmp_path}/no.sock", timeout=2)
    with pytest.raises(EngineUnavailable):
        down.version()
    missing = Engine("tcp://127.0.0.1:9", timeout=2, tls=TLSSettings(ca=str(tmp_path / "ca.pem")))
    with pytest.raises(EngineConfigError) as e:
        missing.version()
    assert str(tmp_path / "ca.pem") in e.value.explanation
