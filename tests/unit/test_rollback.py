"""Rollback and DEL decisions against a small fake engine (no Docker needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cni2cnm import netns
from cni2cnm.engine import Container, Endpoint, EngineUnavailable, NotConnected, NotFound
from cni2cnm.plugin.attach import detach, rollback
from cni2cnm.store import ADDING, ATTACHED, Attachment, Store


def ep(network: str, endpoint_id: str = "ep1") -> Endpoint:
    return Endpoint(network_name=network, network_id=f"id-{network}", endpoint_id=endpoint_id,
                    mac="02:42:0a:00:00:02" if endpoint_id else "", ipv4=None, ipv6=None,
                    gateway=None, ipv6_gateway=None)


class FakeEngine:
    """Containers by ID; connect/disconnect change their endpoints; calls are recorded.
    Disconnect answers as dockerd 20.10 does (measured): a container it does not know is a
    404 ("endpoint <ref> not found" with force), one not on the network a 500."""

    base_url = "fake://"

    def __init__(self, container: Container | None, down: bool = False) -> None:
        self.containers = {container.id: container} if container else {}
        self.calls: list[tuple[str, ...]] = []
        self.down = down

    def container(self, ref: str) -> Container | None:
        if self.down:
            raise EngineUnavailable("engine down")
        return self.containers.get(ref)

    def connect(self, container: str, network: str, **_: Any) -> None:
        self.calls.append(("connect", container, network))
        c = self.containers[container]
        name = "none" if network == "none" else network.removeprefix("id-")
        self.containers[container] = replace(c, endpoints={**c.endpoints, name: ep(name)})

    def disconnect(self, container: str, network: str, force: bool = False) -> None:
        self.calls.append(("disconnect", container, network))
        c = self.containers.get(container)
        if c is None:
            raise NotFound(f"endpoint {container} not found" if force
                           else f"No such container: {container}", 404)
        name = network.removeprefix("id-")
        current = c.endpoints.get(name)
        if current is None or not current.attached:  # a stale entry cannot be disconnected
            raise NotConnected(f"container {container} is not connected to network {name}", 500)
        self.containers[container] = replace(
            c, endpoints={k: v for k, v in c.endpoints.items() if k != name})


def pod(**endpoints: Endpoint) -> Container:
    return Container(id="c1", name="pod", running=True, status="running", pid=1,
                     network_mode="none", sandbox_key="", endpoints=endpoints)


def record(store: Store, **kw: Any) -> Attachment:
    fields: dict[str, Any] = {
        "network": "cni", "container_id": "cid", "ifname": "eth0", "state": ADDING,
        "docker_network": "net", "network_id": "id-net", "network_name": "net",
        "docker_id": "c1", "docker_name": "pod", **kw,
    }
    return store.put(Attachment(**fields))


def test_rollback_clears_the_stale_entry_of_a_failed_connect(tmp_path: Path) -> None:
    # dockerd 20.10 after a failed connect: an entry with an empty EndpointID.
    engine = FakeEngine(pod(net=ep("net", endpoint_id="")))
    with Store(str(tmp_path)) as store:
        att = record(store, none_detached=True)
        rollback(engine, netns.SYSTEM, store, att)  # type: ignore[arg-type]
        assert store.list() == []
    assert engine.calls == [("disconnect", "c1", "id-net"),  # refused: stale
                            ("connect", "c1", "id-net"), ("disconnect", "c1", "id-net"),
                            ("connect", "c1", "none")]
    assert list(engine.containers["c1"].endpoints) == ["none"]


def test_rollback_disconnects_and_reattaches_none(tmp_path: Path) -> None:
    engine = FakeEngine(pod(net=ep("net")))
    with Store(str(tmp_path)) as store:
        rollback(engine, netns.SYSTEM, store, record(store, none_detached=True))  # type: ignore[arg-type]
        assert store.list() == []
    assert engine.calls == [("disconnect", "c1", "id-net"), ("connect", "c1", "none")]


def test_rollback_keeps_the_record_when_the_engine_is_gone(tmp_path: Path) -> None:
    engine = FakeEngine(pod(net=ep("net")), down=True)
    with Store(str(tmp_path)) as store:
        rollback(engine, netns.SYSTEM, store, record(store))  # type: ignore[arg-type]
        [kept] = store.list()
    assert kept.state == ADDING  # DEL or GC finishes the job once the engine answers


def test_detach_of_an_endpoint_already_gone_is_quiet(tmp_path: Path) -> None:
    engine = FakeEngine(pod(none=ep("none")))
    with Store(str(tmp_path)) as store:
        detach(engine, netns.SYSTEM, record(store, state=ATTACHED))  # type: ignore[arg-type]
    assert engine.calls == [("disconnect", "c1", "id-net")]  # one call, "not connected"
    assert list(engine.containers["c1"].endpoints) == ["none"]


def test_detach_is_one_call_when_attached(tmp_path: Path) -> None:
    engine = FakeEngine(pod(net=ep("net")))
    with Store(str(tmp_path)) as store:
        detach(engine, netns.SYSTEM, record(store, state=ATTACHED))  # type: ignore[arg-type]
    assert engine.calls == [("disconnect", "c1", "id-net")]
    assert engine.containers["c1"].endpoints == {}


def test_detach_of_a_removed_container_uses_its_name(tmp_path: Path) -> None:
    engine = FakeEngine(None)
    # force-disconnect finds a removed container's endpoint by the container's name
    engine.containers["pod"] = pod(net=ep("net"))
    with Store(str(tmp_path)) as store:
        detach(engine, netns.SYSTEM, record(store, state=ATTACHED))  # type: ignore[arg-type]
    assert engine.calls == [("disconnect", "c1", "id-net"), ("disconnect", "pod", "id-net")]
    assert engine.containers["pod"].endpoints == {}
