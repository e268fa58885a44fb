"""What cni2cnm's engines do, and what cni2cnm guarantees on each, where engines differ.

Two parts. The engine calls (EngineAPI), in ONE suite run against the in-tree fake engine
(cni2cnm.testing, imitating each release engine.RELEASES names; no engine needed) and against
the real dockerd through cni2cnm.engine.Engine: a new engine call gets its test there, and the
fake cannot drift from dockerd unnoticed. Then the plugin on the real engine (its unit tests
run it on the fake): ADD, CHECK, DEL and GC where engines differ.

Where engines differ (MAC derivation, a MAC at create vs on connect, interface naming, stale
entries after a failed connect) the tests branch on the API version the engine reports and the
boundaries of cni2cnm.engine.versions, and assert that engine's behaviour, never skip. CI runs
the file on bookworm's dockerd 20.10 (API 1.41), with the whole suite, and on Debian unstable's
28.5 (API 1.51): ``C2C_ENGINE=28 scripts/test.sh tests/integration``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import docker
import pytest
from c2ctest import (
    LABEL,
    SESSION_ID,
    busybox_container,
    network_subnets,
    pause_container,
    unavailable,
    unique_name,
)
from engines import derived_mac, engine_api, is_local_unicast
from pluginrun import Plugin, cri_args, endpoint, ip_addrs, plugin_executable, proc_netns

from cni2cnm import netns
from cni2cnm.engine import (
    API_CONNECT_VALIDATES_IP,
    API_IFNAME,
    API_MAC_AT_CREATE,
    API_MAC_ON_CONNECT,
    API_RANDOM_MAC,
    IFNAME_OPTION,
    MIN_API,
    RELEASES,
    AddressInUse,
    AlreadyExists,
    Engine,
    EngineAPI,
    EngineError,
    InvalidRequest,
    NotConnected,
    NotFound,
    Rejected,
    SandboxSpec,
    classify,
    release_of,
)
from cni2cnm.testing import FakeEngine

MAC = "02:42:0a:c2:c0:01"
PROXY_CONF = {"sandboxImage": "local/pause:3.10"}


@pytest.fixture
def api(docker_client: Any) -> tuple[int, int]:
    return engine_api(docker_client)


@pytest.fixture
def state(resources: Any) -> str:
    return str(resources.tmpdir() / "state")


@pytest.fixture
def plugin(docker_host: str, state: str, net: Any, resources: Any,
           docker_client: Any) -> Plugin:
    """mode auto, CNI 1.1.0: container mode for Docker's containers, proxy for the rest."""
    resources.add_cleanup(lambda: remove_sandboxes(docker_client, net))
    return Plugin(docker_host, state, net.name, cni_version="1.1.0", conf_extra=PROXY_CONF)


@pytest.fixture
def pod(resources: Any, images: Any) -> Any:
    return pause_container(resources, images)


def add_cri(plugin: Plugin, pod: Any, ifname: str = "eth0", **kw: Any) -> Any:
    return plugin.run("ADD", pod.id, proc_netns(pod), ifname=ifname, cni_args=cri_args(pod.id),
                      **kw)


def networks_of(container: Any) -> list[str]:
    container.reload()
    return sorted(container.attrs["NetworkSettings"]["Networks"] or {})


def sandboxes(docker_client: Any, net: Any) -> list[Any]:
    return docker_client.containers.list(
        all=True, filters={"label": f"io.cni2cnm.network={net.name}"})


def remove_sandboxes(docker_client: Any, net: Any) -> None:
    for c in sandboxes(docker_client, net):
        c.remove(force=True)


def endpoints_on(net: Any) -> dict[str, Any]:
    net.reload()
    return dict(net.attrs["Containers"] or {})


def pings(peer: Any, address: str) -> bool:
    rc, _ = peer.exec_run(["ping", "-c", "1", "-W", "3", address.split("/")[0]])
    return rc == 0


# ==== the engine calls, on the fake and on dockerd ===========================================
#
# One suite over every engine the plugin is given: cni2cnm.testing's FakeEngine imitating
# each release in cni2cnm.engine.RELEASES (no engine needed), and the real dockerd through
# cni2cnm.engine.Engine (under CI=true it fails when no engine answers). A new EngineAPI call
# gets its test here, so both engines answer it alike: where engines differ the test branches
# on the API version, never on which engine it is, and never skips.


class Node(Protocol):
    """An engine and what a test needs around it (containers, networks, namespaces)."""

    engine: EngineAPI
    image: str  # an image the engine has

    def network(self) -> tuple[str, str]: ...  # a user bridge network: (name, IPv4 subnet)
    def pod(self) -> str: ...  # a running container on `none`: its ID
    def created(self, network: str) -> str: ...  # a container on `network`, not started
    def start(self, cid: str) -> None: ...
    def stop(self, cid: str) -> None: ...
    def sharing(self, cid: str) -> str: ...  # a running container in cid's namespace
    def exited(self, code: int) -> str: ...  # a container whose process exited with `code`
    def links(self, cid: str) -> dict[str, str]: ...  # ifname -> MAC in cid's namespace, no lo
    def removed_at_end(self, name: str) -> None: ...  # a container the test makes by name


class FakeNode:
    def __init__(self, api: tuple[int, int]) -> None:
        self.engine = FakeEngine(api=api)
        self.image = "pause"
        self.engine.images.add(self.image)
        self._n = 0

    def _name(self) -> str:
        self._n += 1
        return f"c2ct-{self._n}"

    def network(self) -> tuple[str, str]:
        name, subnet = self._name(), f"10.240.{self._n}.0/24"
        self.engine.add_network(name, subnet=subnet)
        return name, subnet

    def pod(self) -> str:
        return self.engine.create_container(self._name(), self.image)

    def created(self, network: str) -> str:
        return self.engine.create_container(self._name(), self.image, network, start=False)

    def start(self, cid: str) -> None:
        self.engine.start(cid)

    def stop(self, cid: str) -> None:
        self.engine.stop(cid)

    def sharing(self, cid: str) -> str:
        return self.engine.create_container(self._name(), self.image, f"container:{cid}")

    def exited(self, code: int) -> str:
        cid = self.engine.create_container(self._name(), self.image, "bridge")
        self.engine.stop(cid, exit_code=code)
        return cid

    def links(self, cid: str) -> dict[str, str]:
        ns = self.engine.namespaces.get(netns.of_pid(self.engine.containers[cid].pid))
        return {lk.name: lk.mac for lk in ns.links.values() if lk.name != "lo"}

    def removed_at_end(self, name: str) -> None:
        pass  # nothing outlives the test


class DockerdNode:
    def __init__(self, docker_host: str, resources: Any, images: Any) -> None:
        self.engine = Engine(docker_host, timeout=60)
        self.resources = resources
        self.images = images
        self.image = images.pause

    def _get(self, cid: str) -> Any:
        return self.resources.client.containers.get(cid)

    def network(self) -> tuple[str, str]:
        net = self.resources.network()
        return net.name, network_subnets(net)[0]

    def pod(self) -> str:
        return str(pause_container(self.resources, self.images).id)

    def created(self, network: str) -> str:
        name = unique_name()
        self.resources.track_container(name)
        return str(self.resources.client.containers.create(
            self.image, name=name, network=network, labels={LABEL: SESSION_ID}).id)

    def start(self, cid: str) -> None:
        self._get(cid).start()

    def stop(self, cid: str) -> None:
        self._get(cid).stop(timeout=10)

    def sharing(self, cid: str) -> str:
        return str(self.resources.container(self.image, network_mode=f"container:{cid}").id)

    def exited(self, code: int) -> str:
        c = self.resources.container(self.images.busybox, command=["sh", "-c", f"exit {code}"])
        c.wait(timeout=30)
        return str(c.id)

    def links(self, cid: str) -> dict[str, str]:
        return {name: link["mac"] for name, link in ip_addrs(proc_netns(self._get(cid))).items()
                if name != "lo"}

    def removed_at_end(self, name: str) -> None:
        self.resources.track_container(name)


@pytest.fixture(params=[*(f"fake-{r}" for r in RELEASES), "dockerd"])
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """The fake imitating each release (no engine needed), then the engine at DOCKER_HOST."""
    if request.param != "dockerd":
        yield FakeNode(RELEASES[request.param.removeprefix("fake-")].api)
        return
    real = DockerdNode(request.getfixturevalue("docker_host"),
                       request.getfixturevalue("resources"), request.getfixturevalue("images"))
    yield real
    real.engine.close()


def dotted(api: tuple[int, int]) -> str:
    return f"{api[0]}.{api[1]}"


def nth_host(subnet: str, n: int) -> str:
    return str(ipaddress.ip_network(subnet).network_address + n)


def on_network(node: Node) -> tuple[str, str, str]:
    """A pod moved from `none` to a new network: (pod ID, network, subnet)."""
    cid = node.pod()
    net, subnet = node.network()
    node.engine.disconnect(cid, "none")
    node.engine.connect(cid, net)
    return cid, net, subnet


@pytest.mark.own_modes
def test_the_engine_is_a_known_release(node: Node) -> None:
    """GET /version says what engine.versions says of its release, and the features follow
    the API version (so the fake's flavours are the engines' own facts)."""
    engine = node.engine
    api = engine.api_version()
    release = release_of(api)
    version = engine.version()
    assert release.api == api, f"API {dotted(api)} is no release in engine.RELEASES"
    assert str(version["Version"]).startswith(release.version)
    assert (version["ApiVersion"], version["MinAPIVersion"]) == (dotted(api),
                                                                 dotted(release.min_api))
    assert api >= MIN_API
    # Docker's own boundaries, written out here so that a wrong table cannot agree with itself.
    assert engine.supports_ifname() == (api >= (1, 48))
    assert engine.supports_mac_on_connect() == (api >= (1, 54))


def _connect_twice(node: Node, cid: str, net: str, subnet: str) -> None:
    node.engine.disconnect(cid, "none")
    node.engine.connect(cid, net)
    node.engine.connect(cid, net)


def _static(where: str, n: int) -> Callable[[Node, str, str, str], None]:
    def act(node: Node, cid: str, net: str, subnet: str) -> None:
        node.engine.disconnect(cid, "none")
        ip = (nth_host(subnet, n) if where == "own" else "10.255.254.5" if where == "outside"
              else "172.17.0.250")
        node.engine.connect(cid, net if where != "bridge" else "bridge", ipv4=ip)
    return act


def _taken(node: Node, cid: str, net: str, subnet: str) -> None:
    holder = node.pod()
    node.engine.disconnect(holder, "none")
    node.engine.connect(holder, net, ipv4=nth_host(subnet, 20))
    _static("own", 20)(node, cid, net, subnet)


def _shared(node: Node, cid: str, net: str, subnet: str) -> None:
    node.engine.connect(node.sharing(cid), net)


# (what is asked, the typed refusal, dockerd's words: before API_CONNECT_VALIDATES_IP, from it)
REFUSALS: list[tuple[str, Callable[[Node, str, str, str], None], type[EngineError],
                     tuple[str, str]]] = [
    ("connect twice", _connect_twice, AlreadyExists, ("already exists",) * 2),
    ("disconnect, not connected", lambda n, c, net, s: n.engine.disconnect(c, net),
     NotConnected, ("is not connected to network",) * 2),
    ("missing container", lambda n, c, net, s: n.engine.connect("c2ct-nobody", net), NotFound,
     ("No such container: c2ct-nobody",) * 2),
    ("missing network", lambda n, c, net, s: n.engine.connect(c, "c2ct-nowhere"), NotFound,
     ("network c2ct-nowhere not found",) * 2),
    ("force-disconnect, missing container",
     lambda n, c, net, s: n.engine.disconnect("c2ct-gone", net, force=True), NotFound,
     ("endpoint c2ct-gone not found",) * 2),
    ("static address outside the subnet", _static("outside", 0), InvalidRequest,
     ("does not belong to any of this network's subnets",
      "invalid endpoint settings:\nno configured subnet or ip-range contain the IP address "
      "10.255.254.5")),
    ("static address on the default bridge", _static("bridge", 0), InvalidRequest,
     ("user specified IP address is supported on user defined networks only",) * 2),
    ("static address taken", _taken, AddressInUse, ("Address already in use",) * 2),
    ("none mode", lambda n, c, net, s: n.engine.connect(c, net), Rejected,
     ("private (none) mode",) * 2),
    ("container mode", _shared, Rejected, ("sharing network namespace",) * 2),
]


@pytest.mark.own_modes
@pytest.mark.parametrize(("act", "kind", "words"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_are_typed(node: Node, act: Callable[[Node, str, str, str], None],
                            kind: type[EngineError], words: tuple[str, str]) -> None:
    """Each refusal is the error type the plugin maps to a CNI code, in dockerd's words (the
    swarm's, overlay and not attachable, are in tests/unit/testing and test_swarm.py)."""
    cid = node.pod()
    net, subnet = node.network()
    with pytest.raises(EngineError) as caught:
        act(node, cid, net, subnet)
    e = caught.value
    said = words[node.engine.api_version() >= API_CONNECT_VALIDATES_IP]
    assert type(e) is kind and said in e.explanation, (type(e), e.explanation)
    if kind is not NotConnected:  # the adapter reads that one from a 500's text itself
        assert type(classify(e.status, e.explanation)) is kind


@pytest.mark.own_modes
def test_container_and_network_models(node: Node) -> None:
    engine = node.engine
    cid = node.pod()
    c = engine.container(cid)
    assert c is not None and c.id == cid and c.running and c.pid > 0 and c.exit is None
    assert c.network_mode == "none" and list(c.endpoints) == ["none"]
    assert engine.container(c.name) == c and engine.container(cid[:12]) == c
    net, subnet = node.network()
    engine.disconnect(cid, "none")
    engine.connect(cid, net, ipv4=nth_host(subnet, 9), aliases=["web"])
    network = engine.network(net)
    assert network is not None and network.name == net and network.driver == "bridge"
    assert [s.subnet for s in network.subnets] == [subnet] and network.scope == "local"
    ep = engine.container(cid).endpoint_in(network.id)  # type: ignore[union-attr]
    assert ep is not None and ep.attached and ep.ipv4 == f"{nth_host(subnet, 9)}/24"
    assert ep.gateway == nth_host(subnet, 1) and "web" in ep.aliases
    [member] = network.members
    assert (member.container_id, member.name, member.endpoint_id) == (cid, c.name,
                                                                     ep.endpoint_id)
    assert member.ipv4 == ep.ipv4 and member.mac == ep.mac
    assert engine.container("c2ct-no-such-container") is None
    assert engine.network("c2ct-no-such-network") is None


@pytest.mark.own_modes
def test_interface_names(node: Node) -> None:
    """Before API_IFNAME: eth0, eth1, ... in connect order, never reused, the ifname option
    ignored; from it, the option names the interface, else the first ethN not in use."""
    cid, first, _ = on_network(node)
    second, _ = node.network()
    node.engine.connect(cid, second, driver_opts={IFNAME_OPTION: "net1"})
    node.engine.disconnect(cid, first)
    node.engine.connect(cid, first)
    if node.engine.api_version() >= API_IFNAME:
        assert sorted(node.links(cid)) == ["eth0", "net1"]
    else:
        assert sorted(node.links(cid)) == ["eth1", "eth2"]


@pytest.mark.own_modes
def test_endpoint_macs(node: Node) -> None:
    """Before API_RANDOM_MAC the MAC is 02:42 + the IPv4 address, the one asked ignored; from
    it a random one; from API_MAC_ON_CONNECT the one asked on connect."""
    asked = "02:00:0a:c2:c0:01"
    cid = node.pod()
    net, subnet = node.network()
    node.engine.disconnect(cid, "none")
    node.engine.connect(cid, net, ipv4=nth_host(subnet, 7), mac=asked)
    api = node.engine.api_version()
    mac = node.engine.container(cid).endpoints[net].mac  # type: ignore[union-attr]
    assert node.links(cid) == {"eth0": mac} and int(mac[:2], 16) & 0b11 == 0b10
    if api >= API_MAC_ON_CONNECT:
        assert mac == asked
    elif api >= API_RANDOM_MAC:
        assert mac not in (asked, derived_mac(nth_host(subnet, 7)))
    else:
        assert mac == derived_mac(nth_host(subnet, 7))


@pytest.mark.own_modes
@pytest.mark.parametrize("cause", ["outside the subnet", "taken"])
def test_a_failed_connect_may_leave_a_stale_entry(node: Node, cause: str) -> None:
    """A connect refused for its address leaves a Networks entry without EndpointID: always
    for an address in use, and before API_CONNECT_VALIDATES_IP for one outside the subnet.
    Such an entry cannot be disconnected; a later connect replaces it."""
    cid = node.pod()
    net, subnet = node.network()
    act = _static("outside", 0) if cause != "taken" else _taken
    with pytest.raises(InvalidRequest if cause != "taken" else AddressInUse):
        act(node, cid, net, subnet)
    validates = node.engine.api_version() >= API_CONNECT_VALIDATES_IP
    stale = not validates or cause == "taken"
    entry = node.engine.container(cid).endpoints.get(net)  # type: ignore[union-attr]
    assert (entry is not None and not entry.attached) == stale and (entry is None) != stale
    if stale:
        with pytest.raises(NotConnected):
            node.engine.disconnect(cid, net)
    node.engine.connect(cid, net)
    assert node.engine.container(cid).endpoints[net].attached  # type: ignore[union-attr]


@pytest.mark.own_modes
def test_a_created_container_gets_its_endpoint_on_start(node: Node) -> None:
    net, subnet = node.network()
    cid = node.created(net)
    c = node.engine.container(cid)
    assert c is not None and not c.running and not c.endpoints[net].attached
    node.start(cid)
    ep = node.engine.container(cid).endpoints[net]  # type: ignore[union-attr]
    assert ep.attached and ep.ipv4 == f"{nth_host(subnet, 2)}/24"
    assert list(node.links(cid)) == ["eth0"]


@pytest.mark.own_modes
def test_a_stop_releases_addresses_and_keeps_empty_entries(node: Node) -> None:
    cid, net, _ = on_network(node)
    node.stop(cid)
    c = node.engine.container(cid)
    assert c is not None and not c.running and c.exit is not None and c.exit.exit_code == 0
    assert not c.endpoints[net].attached and c.endpoints[net].ipv4 is None
    assert node.engine.network(net).members == ()  # type: ignore[union-attr]


@pytest.mark.own_modes
def test_an_exited_container_says_how_it_ended(node: Node) -> None:
    c = node.engine.container(node.exited(3))
    assert c is not None and not c.running and c.status == "exited"
    assert c.exit is not None and c.exit.exit_code == 3


@pytest.mark.own_modes
def test_sandboxes_are_labelled_listed_and_removed(node: Node) -> None:
    net, subnet = node.network()
    name = unique_name("sandbox")
    node.removed_at_end(name)
    label = f"c2ct.test={name}"
    cid = node.engine.run_sandbox(SandboxSpec(name=name, image=node.image, network=net,
                                              labels={"c2ct.test": name},
                                              ipv4=nth_host(subnet, 30)))
    [listed] = node.engine.containers_with_label(label)
    assert (listed.id, listed.name, listed.labels["c2ct.test"], listed.state) == (
        cid, name, name, "running")
    c = node.engine.container(cid)
    assert c is not None and c.running and c.labels["c2ct.test"] == name
    assert cid in node.engine.running_container_ids()
    ep = c.endpoints[net]
    assert ep.attached and ep.ipv4 == f"{nth_host(subnet, 30)}/24"
    assert node.engine.remove_container(cid) is True and node.engine.remove_container(cid) is False
    assert node.engine.containers_with_label(label) == [] and node.engine.container(cid) is None


@pytest.mark.own_modes
def test_images(node: Node) -> None:
    assert node.engine.has_image(node.image)
    node.engine.ensure_image(node.image)  # present: no pull
    assert not node.engine.has_image("c2ct-no-such-image:1")


# ---- the engine under test ------------------------------------------------------------------


@pytest.mark.own_modes
def test_the_engine_is_the_one_asked_for(docker_client: Any, api: tuple[int, int]) -> None:
    """scripts/test.sh started the engine C2C_ENGINE names, on bookworm's containerd and runc."""
    d = os.environ.get("CNI2CNM_TEST_ENGINE_DIR", "")
    saved = Path(d, "engine") if d else None
    if saved is None or not saved.is_file():
        unavailable("the engine was not started by scripts/test.sh (CNI2CNM_TEST_ENGINE_DIR)")
        return
    want = saved.read_text().strip()
    version = docker_client.version()
    assert str(version["Version"]).startswith(want + "."), (want, version["Version"])
    components = {c["Name"]: c["Version"] for c in version.get("Components") or []}
    assert components["containerd"].startswith("1.6.") and components["runc"].startswith("1.1.")
    assert {"20.10": (1, 41) <= api < (1, 42), "28": (1, 48) <= api < (1, 52)}[want], api
    assert api == RELEASES[want].api  # the release the fake imitates as fake-<want>


@pytest.mark.own_modes
def test_doctor_says_what_the_engine_can(docker_host: str, net: Any, state: str,
                                         api: tuple[int, int]) -> None:
    proc = subprocess.run(
        [plugin_executable(), "doctor", "--docker-host", docker_host, "--state-dir", state,
         "--network", net.name, "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("CNI_")})
    checks = {c["check"]: c["status"] for c in json.loads(proc.stdout)["checks"]}
    assert checks["ifname"] == ("OK" if api >= API_IFNAME else "WARN")
    assert checks["mac"] == ("OK" if api >= API_MAC_ON_CONNECT else "WARN")


# ---- MAC addresses ------------------------------------------------------------------------


def test_result_mac_is_the_endpoints(plugin: Plugin, net: Any, resources: Any,
                                     images: Any, api: tuple[int, int]) -> None:
    """The result's MAC is the one the engine reports and the interface carries; 20.10
    derives it from the address (the same address gives the same MAC), 28 picks it at
    random (the same address, another endpoint: another MAC)."""
    address = network_subnets(net)[0].rsplit(".", 1)[0] + ".21"
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [f"{address}/24"]})
    macs = []
    for _ in range(2):
        pod = pause_container(resources, images)
        netns = proc_netns(pod)
        res = add_cri(plugin, pod, conf=conf).ok().doc
        mac = res["interfaces"][0]["mac"]
        assert mac == endpoint(pod, net.name)["MacAddress"] == ip_addrs(netns)["eth0"]["mac"]
        assert is_local_unicast(mac)
        plugin.run("CHECK", pod.id, netns, cni_args=cri_args(pod.id), prev=res).silent()
        plugin.run("DEL", pod.id, netns, cni_args=cri_args(pod.id), prev=res).silent()
        macs.append(mac)
    if api < API_RANDOM_MAC:
        assert macs == [derived_mac(address)] * 2
    else:
        assert macs[0] != macs[1] and derived_mac(address) not in macs


def test_requested_mac_in_container_mode(plugin: Plugin, pod: Any, net: Any,
                                         api: tuple[int, int]) -> None:
    """Engines before API 1.54 ignore a MAC on connect: code 102 and a full rollback. Then
    the same pod without the MAC: 28 names the interface eth0 again; 20.10's counter has
    moved on (the rolled-back connect used eth0), which ADD reports as it is (102, eth1)."""
    netns = proc_netns(pod)
    conf = plugin.conf(capabilities={"mac": True}, runtimeConfig={"mac": MAC})
    out = add_cri(plugin, pod, conf=conf)
    if api >= API_MAC_ON_CONNECT:  # Docker 29.3+: no engine here speaks it
        assert out.ok().doc["interfaces"][0]["mac"] == MAC == ip_addrs(netns)["eth0"]["mac"]
        return
    details = out.error(102)["details"]
    assert MAC in details and "1.54" in details
    assert networks_of(pod) == ["none"] and endpoints_on(net) == {}
    assert sorted(ip_addrs(netns)) == ["lo"] and plugin.records() == []

    retry = add_cri(plugin, pod)
    if api >= API_IFNAME:
        res = retry.ok().doc
        assert res["interfaces"][0]["name"] == "eth0" and res["interfaces"][0]["mac"] != MAC
        assert sorted(ip_addrs(netns)) == ["eth0", "lo"]
    else:
        assert "Docker named the interface eth1" in retry.error(102)["details"]
        assert networks_of(pod) == ["none"] and endpoints_on(net) == {}
        assert sorted(ip_addrs(netns)) == ["lo"] and plugin.records() == []


def test_requested_mac_in_proxy_mode(plugin: Plugin, net: Any, resources: Any,
                                     docker_client: Any, api: tuple[int, int]) -> None:
    """A proxy sandbox gets the MAC at create: engines from API 1.44 apply it there, so
    the ADD succeeds with it; 20.10 ignores it: code 102, sandbox removed, nothing left."""
    ns = resources.netns()
    cid = "cnitool-" + "3a" * 10
    conf = plugin.conf(capabilities={"mac": True}, runtimeConfig={"mac": MAC})
    out = plugin.run("ADD", cid, ns, conf=conf)
    if api >= API_MAC_AT_CREATE:
        res = out.ok().doc
        assert res["interfaces"][0]["mac"] == MAC == ip_addrs(ns)["eth0"]["mac"]
        [sandbox] = sandboxes(docker_client, net)
        assert endpoint(sandbox, net.name)["MacAddress"] == MAC
        plugin.run("CHECK", cid, ns, conf=conf, prev=res).silent()
        plugin.run("DEL", cid, ns, conf=conf, prev=res).silent()
    else:
        assert MAC in out.error(102)["details"]
    assert sandboxes(docker_client, net) == [] and plugin.records() == []
    assert sorted(ip_addrs(ns)) == ["lo"] and endpoints_on(net) == {}


# ---- interface names ----------------------------------------------------------------------


@pytest.mark.parametrize("deleted_first", ["eth0", "second"])
def test_pod_on_two_networks(docker_host: str, state: str, resources: Any, images: Any,
                             api: tuple[int, int], deleted_first: str) -> None:
    """A pod on two Docker networks: eth0 and net1 on engines from API 1.48; before, net1 is
    refused (102) before any engine change and the second interface is eth1. CHECK and DEL of
    one leave the other working."""
    net_a, net_b = resources.network(), resources.network()
    plug_a, plug_b = Plugin(docker_host, state, net_a.name), Plugin(docker_host, state,
                                                                    net_b.name)
    pod = pause_container(resources, images)
    netns = proc_netns(pod)
    res_a = add_cri(plug_a, pod).ok().doc
    ep_a = endpoint(pod, net_a.name)["EndpointID"]
    out = add_cri(plug_b, pod, ifname="net1")
    if api >= API_IFNAME:
        second, res_b = "net1", out.ok().doc
    else:
        details = out.error(102)["details"]
        assert "net1" in details and "1.48" in details
        assert networks_of(pod) == [net_a.name] and endpoint(pod, net_a.name)["EndpointID"] == ep_a
        assert sorted(ip_addrs(netns)) == ["eth0", "lo"] and plug_b.records() == []
        second, res_b = "eth1", add_cri(plug_b, pod, ifname="eth1").ok().doc
    assert res_a["interfaces"][0]["name"] == "eth0"
    assert res_b["interfaces"][0]["name"] == second
    links = ip_addrs(netns)
    assert sorted(links) == sorted(["lo", "eth0", second])
    assert links["eth0"]["addrs"] == [res_a["ips"][0]["address"]]
    assert links[second]["addrs"] == [res_b["ips"][0]["address"]]
    attachments = {"eth0": (plug_a, net_a, res_a), second: (plug_b, net_b, res_b)}
    for ifname, (p, _, res) in attachments.items():
        p.run("CHECK", pod.id, netns, ifname=ifname, cni_args=cri_args(pod.id),
              prev=res).silent()
    peers = {ifname: busybox_container(resources, images, network=n.name)
             for ifname, (_, n, _) in attachments.items()}
    for ifname, (_, _, res) in attachments.items():
        assert pings(peers[ifname], res["ips"][0]["address"]), ifname

    gone = "eth0" if deleted_first == "eth0" else second
    kept = second if gone == "eth0" else "eth0"
    for ifname in (gone, kept):
        p, n, res = attachments[ifname]
        p.run("DEL", pod.id, netns, ifname=ifname, cni_args=cri_args(pod.id),
              prev=res).silent()
        assert endpoint(pod, n.name) is None and p.records() == []
        if ifname == gone:
            kp, _, kres = attachments[kept]
            kp.run("CHECK", pod.id, netns, ifname=kept, cni_args=cri_args(pod.id),
                   prev=kres).silent()
            assert sorted(ip_addrs(netns)) == sorted(["lo", kept])
            assert pings(peers[kept], kres["ips"][0]["address"])
            assert [r.ifname for r in kp.records()] == [kept]
    assert networks_of(pod) == [] and sorted(ip_addrs(netns)) == ["lo"]


def test_gc_with_custom_interface_names(plugin: Plugin, net: Any, resources: Any,
                                        images: Any, docker_client: Any,
                                        api: tuple[int, int]) -> None:
    """GC matches attachments by (container ID, interface name), with names of the runtime's
    choosing: any name in proxy mode on every engine; in container mode net1 from API 1.48,
    eth0 before (the name such engines give)."""
    named = "net1" if api >= API_IFNAME else "eth0"
    keep_pod, drop_pod = pause_container(resources, images), pause_container(resources, images)
    keep_ns, drop_ns = resources.netns(), resources.netns()
    keep_cid, drop_cid = "cnitool-" + "4b" * 10, "cnitool-" + "5c" * 10
    done = {
        (keep_pod.id, named): add_cri(plugin, keep_pod, ifname=named).ok().doc,
        (drop_pod.id, named): add_cri(plugin, drop_pod, ifname=named).ok().doc,
        (keep_cid, "pod-a0"): plugin.run("ADD", keep_cid, keep_ns, ifname="pod-a0").ok().doc,
        (drop_cid, "net7"): plugin.run("ADD", drop_cid, drop_ns, ifname="net7").ok().doc,
    }
    assert {(r.container_id, r.ifname, r.mode) for r in plugin.records()} == {
        (keep_pod.id, named, "container"), (drop_pod.id, named, "container"),
        (keep_cid, "pod-a0", "proxy"), (drop_cid, "net7", "proxy")}
    assert len(sandboxes(docker_client, net)) == 2
    valid = [{"containerID": keep_pod.id, "ifname": named},
             {"containerID": keep_cid, "ifname": "pod-a0"},
             {"containerID": drop_cid, "ifname": "eth0"},  # the container, not its attachment
             {"containerID": drop_pod.id, "ifname": "net9"}]
    gc = plugin.conf(**{"cni.dev/valid-attachments": valid})
    plugin.run("GC", "", "", ifname="", conf=gc).silent()
    assert {(r.container_id, r.ifname) for r in plugin.records()} == {
        (keep_pod.id, named), (keep_cid, "pod-a0")}
    assert endpoint(drop_pod, net.name) is None and sorted(ip_addrs(proc_netns(drop_pod))) == [
        "lo"]
    assert sorted(ip_addrs(drop_ns)) == ["lo"] and len(sandboxes(docker_client, net)) == 1
    plugin.run("CHECK", keep_pod.id, proc_netns(keep_pod), ifname=named,
               cni_args=cri_args(keep_pod.id), prev=done[(keep_pod.id, named)]).silent()
    plugin.run("CHECK", keep_cid, keep_ns, ifname="pod-a0",
               prev=done[(keep_cid, "pod-a0")]).silent()
    plugin.run("GC", "", "", ifname="", conf=plugin.conf()).silent()
    assert plugin.records() == [] and sandboxes(docker_client, net) == []
    assert endpoints_on(net) == {} and sorted(ip_addrs(keep_ns)) == ["lo"]


# ---- a failed connect ---------------------------------------------------------------------


def test_stale_entry_after_a_failed_connect(plugin: Plugin, net: Any, resources: Any,
                                            images: Any, docker_client: Any,
                                            api: tuple[int, int]) -> None:
    """Both engines leave a Networks entry without an EndpointID after a connect that fails
    for an address in use; 20.10 also for an address outside the subnet, which engines from
    API 1.44 refuse before. cni2cnm refuses such addresses before connecting (no stale entry
    of its own) and attaches a container that carries someone else's stale entry."""
    holder = pause_container(resources, images)
    taken = add_cri(plugin, holder).ok().doc["ips"][0]["address"].split("/")[0]
    outside = "10.255.254.7"
    none = docker_client.networks.get("none")

    victim = pause_container(resources, images)
    none.disconnect(victim.id)
    with pytest.raises(docker.errors.APIError):
        net.connect(victim.id, ipv4_address=taken)
    stale = endpoint(victim, net.name)
    assert stale is not None and stale["EndpointID"] == ""

    other = pause_container(resources, images)
    none.disconnect(other.id)
    with pytest.raises(docker.errors.APIError):
        net.connect(other.id, ipv4_address=outside)
    if api >= API_CONNECT_VALIDATES_IP:
        assert endpoint(other, net.name) is None
    else:
        assert endpoint(other, net.name)["EndpointID"] == ""

    # cni2cnm: both addresses refused before connecting, the pod left on none, no record.
    pod = pause_container(resources, images)
    for address, why in ((taken, "already in use"), (outside, "does not belong")):
        conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [address]})
        assert why in add_cri(plugin, pod, conf=conf).error(7)["details"]
        assert networks_of(pod) == ["none"]
    assert [r.container_id for r in plugin.records()] == [holder.id]

    # cni2cnm: the container with the stale entry is attached all the same; DEL leaves none.
    res = add_cri(plugin, victim).ok().doc
    ep = endpoint(victim, net.name)
    assert ep["EndpointID"] and res["ips"][0]["address"] == f"{ep['IPAddress']}/24"
    plugin.run("CHECK", victim.id, proc_netns(victim), cni_args=cri_args(victim.id),
               prev=res).silent()
    plugin.run("DEL", victim.id, proc_netns(victim), cni_args=cri_args(victim.id),
               prev=res).silent()
    assert endpoint(victim, net.name) is None
