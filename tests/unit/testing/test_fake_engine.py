"""The fake engine answers as dockerd does (/work/shared/reference/docker-engine.md): each
refusal is the type the real adapter classifies dockerd's answer into, per engine flavour."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cni2cnm.engine import (
    IFNAME_OPTION,
    AddressInUse,
    AlreadyExists,
    Deadline,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    NotAttachable,
    NotConnected,
    NotFound,
    Rejected,
    SandboxSpec,
    classify,
)
from cni2cnm.testing import FakeEngine

OPT = {IFNAME_OPTION: "net1"}


def node(api: tuple[int, int] = (1, 41)) -> tuple[FakeEngine, str]:
    engine = FakeEngine(api=api)
    engine.add_network("pods", subnet="10.240.0.0/24")
    return engine, engine.create_container("web")


def on_pods(api: tuple[int, int] = (1, 41)) -> tuple[FakeEngine, str]:
    engine, cid = node(api)
    engine.disconnect(cid, "none")
    engine.connect(cid, "pods")
    return engine, cid


def shared(e: FakeEngine, cid: str) -> None:
    e.connect(e.create_container("side", network_mode=f"container:{cid}"), "pods")


def overlay_taken(e: FakeEngine, cid: str) -> None:
    e.add_overlay("ovl")
    e.create_container("other", network_mode="ovl")  # takes 10.70.0.2
    e.disconnect(cid, "none")
    e.connect(cid, "ovl", ipv4="10.70.0.2")


def not_attachable(e: FakeEngine, cid: str) -> None:
    e.add_overlay("svc", "10.71.0.0/24", attachable=False)
    e.disconnect(cid, "none")
    e.connect(cid, "svc")


def static_on(network: str, ip: str) -> Callable[[FakeEngine, str], None]:
    def act(e: FakeEngine, cid: str) -> None:
        e.disconnect(cid, "none")
        e.connect(cid, network, ipv4=ip)
    return act


def connect_twice(e: FakeEngine, cid: str) -> None:
    e.disconnect(cid, "none")
    e.connect(cid, "pods")
    e.connect(cid, "pods")


def taken(e: FakeEngine, cid: str) -> None:
    e.create_container("other", network_mode="pods")  # takes 10.240.0.2
    static_on("pods", "10.240.0.2")(e, cid)


# (what is asked, the typed refusal, dockerd's words)
REFUSALS: list[tuple[str, Callable[[FakeEngine, str], None], type[EngineError], str]] = [
    ("connect twice", connect_twice, AlreadyExists, "endpoint with name web already exists"),
    ("disconnect, not connected", lambda e, c: e.disconnect(c, "pods"), NotConnected,
     "is not connected to network pods"),
    ("missing container", lambda e, c: e.connect("nobody", "nowhere"), NotFound,
     "No such container: nobody"),
    ("missing network", lambda e, c: e.connect(c, "nowhere"), NotFound,
     "network nowhere not found"),
    ("force-disconnect, missing container", lambda e, c: e.disconnect("gone", "pods", force=True),
     NotFound, "endpoint gone not found"),
    ("static address outside the subnet", static_on("pods", "10.99.0.5"), InvalidRequest,
     "does not belong to any of this network's subnets"),
    ("static address on the default bridge", static_on("bridge", "172.17.0.9"),
     InvalidRequest, "user specified IP address is supported only"),
    ("static address taken", taken, AddressInUse, "Address already in use"),
    ("taken on an overlay", overlay_taken, Deadline, "context deadline exceeded"),
    ("none mode", lambda e, c: e.connect(c, "pods"), Rejected, "private (none) mode"),
    ("container mode", shared, Rejected, "sharing network namespace"),
    ("not attachable", not_attachable, NotAttachable, "not manually attachable"),
]


@pytest.mark.parametrize(("act", "kind", "words"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_are_dockerd_s(act: Callable[[FakeEngine, str], None],
                                kind: type[EngineError], words: str) -> None:
    engine, cid = node()
    with pytest.raises(EngineError) as caught:
        act(engine, cid)
    e = caught.value
    assert type(e) is kind and words in e.explanation
    # What the real adapter makes of the same answer (NotConnected comes from a 500 whose
    # text the adapter reads itself): the fake's words are dockerd's.
    if kind is not NotConnected:
        assert type(classify(e.status, e.explanation)) is kind


def test_20_10_names_interfaces_in_connect_order_never_reused() -> None:
    engine, cid = on_pods()
    engine.add_network("b", subnet="10.241.0.0/24")
    engine.connect(cid, "b", driver_opts=OPT)  # the ifname option is ignored
    engine.disconnect(cid, "pods")
    engine.connect(cid, "pods")
    ns = engine.namespaces.get(f"/proc/{engine.container(cid).pid}/ns/net")  # type: ignore[union-attr]
    assert sorted(lk.name for lk in ns.links.values()) == ["eth1", "eth2", "lo"]


def test_20_10_derives_the_mac_and_ignores_the_one_asked() -> None:
    engine, cid = node()
    engine.disconnect(cid, "none")
    engine.connect(cid, "pods", ipv4="10.240.0.7", mac="02:00:00:00:00:01")
    assert engine.container(cid).endpoints["pods"].mac == "02:42:0a:f0:00:07"  # type: ignore[union-attr]


@pytest.mark.parametrize(("api", "applied"), [((1, 51), False), ((1, 54), True)])
def test_28_random_mac_and_the_mac_on_connect(api: tuple[int, int], applied: bool) -> None:
    engine, cid = node(api)
    engine.disconnect(cid, "none")
    engine.connect(cid, "pods", mac="02:00:00:00:00:01", driver_opts=OPT)
    ep = engine.container(cid).endpoints["pods"]  # type: ignore[union-attr]
    assert (ep.mac == "02:00:00:00:00:01") == applied and not ep.mac.startswith("02:42:0a")
    ns = engine.namespaces.get(f"/proc/{engine.container(cid).pid}/ns/net")  # type: ignore[union-attr]
    assert ns.named("net1") is not None  # the ifname option is honoured


@pytest.mark.parametrize(("api", "stale"), [((1, 41), True), ((1, 51), False)])
def test_a_failed_connect_leaves_a_stale_entry_on_20_10(api: tuple[int, int],
                                                        stale: bool) -> None:
    engine, cid = node(api)
    engine.disconnect(cid, "none")
    with pytest.raises(InvalidRequest):
        engine.connect(cid, "pods", ipv4="10.99.0.1")
    entry = engine.container(cid).endpoints.get("pods")  # type: ignore[union-attr]
    assert (entry is not None and not entry.attached) == stale
    if stale:
        with pytest.raises(NotConnected):
            engine.disconnect(cid, "pods")
        engine.connect(cid, "pods")  # a successful connect overwrites it
        assert engine.container(cid).endpoints["pods"].attached  # type: ignore[union-attr]


def test_created_container_gets_its_endpoint_on_start() -> None:
    engine = FakeEngine()
    engine.add_network("pods", subnet="10.240.0.0/24")
    cid = engine.create_container("later", network_mode="pods", start=False)
    assert not engine.container(cid).endpoints["pods"].attached  # type: ignore[union-attr]
    engine.start(cid)
    c = engine.container(cid)
    assert c is not None and c.endpoints["pods"].ipv4 == "10.240.0.2/24"
    key = engine.sandbox_key(engine.containers[cid])
    assert engine.namespaces.identity(key) == engine.namespaces.identity(
        f"/proc/{c.pid}/ns/net")


def test_stop_releases_addresses_and_keeps_empty_entries() -> None:
    engine, cid = on_pods()
    engine.stop(cid, exit_code=3)
    c = engine.container(cid)
    assert c is not None and c.exit is not None and c.exit.exit_code == 3
    assert not c.endpoints["pods"].attached and engine.network("pods").members == ()  # type: ignore[union-attr]
    assert not engine.namespaces.is_namespace("/proc/1001/ns/net")


def test_sandbox_of_an_image_that_exits() -> None:
    engine = FakeEngine()
    engine.add_network("pods", subnet="10.240.0.0/24")
    engine.exiting_images["busybox"] = 1
    cid = engine.run_sandbox(SandboxSpec(name="sb", image="busybox", network="pods",
                                         labels={"k": "v"}))
    c = engine.container(cid)
    assert c is not None and c.status == "exited" and c.exit.exit_code == 1  # type: ignore[union-attr]
    assert [lc.id for lc in engine.containers_with_label("k=v")] == [cid]


def test_down_faults_and_hooks() -> None:
    engine, cid = node()
    engine.fail("container", NotFound("no", 404), nth=2)
    engine.container(cid)
    with pytest.raises(NotFound):
        engine.container(cid)
    engine.container(cid)  # once only
    engine.fail("container", Rejected("after", 500), after="disconnect")
    engine.container(cid)  # not armed yet
    engine.disconnect(cid, "none")
    with pytest.raises(Rejected):
        engine.container(cid)
    engine.then("api_version", lambda: setattr(engine, "down", True))
    assert engine.api_version() == (1, 41)
    with pytest.raises(EngineUnavailable):
        engine.api_version()
    assert [m for m, _ in engine.calls] == ["container"] * 4 + [
        "disconnect", "container", "api_version", "api_version"]
