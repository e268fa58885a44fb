"""inspect's join of store, engine, namespace and runtime cache, with the in-tree fake
engine (cni2cnm.testing)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cni2cnm import netns
from cni2cnm.engine import InvalidRequest
from cni2cnm.ops import inspect as ops
from cni2cnm.ops import resultcache
from cni2cnm.ops.inspect_rows import table_rows
from cni2cnm.store import ADDING, ATTACHED, Attachment, Store, StoreError
from cni2cnm.testing import FakeEngine

NET_ID = "e0" * 32
CID = "c" * 64


def good_engine(ips: tuple[str, ...] = ("10.240.0.5/24",), attached: bool = True
                ) -> FakeEngine:
    """Docker 20.10 with network pods and container pod1 (CID) on it, or, when not
    attached, with the stale entry a failed connect leaves."""
    engine = FakeEngine()
    engine.add_network("pods", subnet="10.240.0.0/24", id=NET_ID)
    engine.create_container("pod1", id=CID)
    engine.disconnect(CID, "none")
    if attached:
        engine.connect(CID, "pods", ipv4=ips[0].split("/")[0])
    else:
        with pytest.raises(InvalidRequest):
            engine.connect(CID, "pods", ipv4="10.99.0.1")
    return engine


def endpoint_id(engine: FakeEngine) -> str:
    c = engine.container(CID)
    assert c is not None
    return c.endpoints["pods"].endpoint_id


def without_container() -> FakeEngine:
    engine = FakeEngine()
    engine.add_network("pods", subnet="10.240.0.0/24", id=NET_ID)
    return engine


def without_network() -> FakeEngine:
    engine = good_engine()
    engine.disconnect(CID, "pods")
    engine.remove_network("pods")
    return engine


def record(state_dir: Path, **kw: Any) -> Attachment:
    att = Attachment(**{
        "network": "pods", "container_id": CID, "ifname": "eth0", "state": ATTACHED,
        "docker_network": "pods", "network_id": NET_ID, "network_name": "pods",
        "docker_id": CID, "docker_name": "pod1", "endpoint_id": "e" * 64, "netns": "",
        "interface": "eth0", "mac": "02:42:0a:f0:00:05", "ips": ["10.240.0.5/24"], **kw})
    with Store(str(state_dir)) as store:
        store.put(att)
    return att


def cache_file(d: Path, ips: list[str], cid: str = CID, state_dir: str | None = None,
               ifname: str = "eth0") -> Path:
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "pods",
                            "plugins": [{"type": "cni2cnm"}, {"type": "tuning"}]}
    if state_dir:
        conf["plugins"][0]["stateDir"] = state_dir
    doc = {
        "kind": "cniCacheV1", "containerId": cid, "ifName": ifname, "networkName": "pods",
        "config": base64.b64encode(json.dumps(conf).encode()).decode(),
        "result": {"cniVersion": "1.0.0",
                   "interfaces": [{"name": ifname, "mac": "02:42:0A:F0:00:05",
                                   "sandbox": "/proc/1/ns/net"}],
                   "ips": [{"address": a, "interface": 0} for a in ips]},
    }
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"pods-{cid}-{ifname}"
    path.write_text(json.dumps(doc))
    return path


def run(tmp_path: Path, engine: Any, **kw: Any) -> ops.Report:
    return ops.inspect(str(tmp_path / "state"), engine, [str(tmp_path / "cache")], now=1e10,
                       **kw)


def test_empty_state_dir_is_not_created(tmp_path: Path) -> None:
    report = run(tmp_path, good_engine())
    assert report.rows == [] and report.exit_code == 0
    assert not (tmp_path / "state").exists()


def test_no_drift(tmp_path: Path) -> None:
    record(tmp_path / "state")
    engine = good_engine()
    [row] = run(tmp_path, engine).rows
    assert row["drift"] == [] and row["error"] is None
    assert row["engine"] == {"attached": True, "endpointId": endpoint_id(engine),
                             "mac": "02:42:0a:f0:00:05", "ips": ["10.240.0.5/24"]}
    assert row["dockerContainer"] == {"name": "pod1", "id": CID, "exists": True,
                                      "status": "running"}
    assert row["netnsExists"] is None and row["runtime"] is None


def test_schema_keys_are_stable(tmp_path: Path) -> None:
    record(tmp_path / "state")
    cache_file(tmp_path / "cache", ["10.240.0.5/24"], cid="other", state_dir=str(
        tmp_path / "state"))
    rows = run(tmp_path, good_engine()).rows
    keys = ["network", "containerId", "ifname", "state", "mode", "dockerNetwork",
            "dockerContainer", "netns", "netnsExists", "interface", "mac", "ips", "endpointId",
            "engine", "runtime", "created", "updated", "ageSeconds", "drift", "error"]
    assert [list(r) for r in rows] == [keys, keys]
    json.dumps(rows)


@pytest.mark.parametrize(
    ("make", "want"),
    [
        (without_container, ["container-gone"]),
        (without_network, ["network-gone"]),
        (lambda: good_engine(attached=False), ["recorded-not-attached"]),
        (lambda: good_engine(ips=("10.240.0.9/24",)), ["ips-differ"]),
        (lambda: FakeEngine(down=True), ["engine-unreachable"]),
    ],
)
def test_engine_drift(tmp_path: Path, make: Callable[[], FakeEngine], want: list[str]) -> None:
    engine = make()
    record(tmp_path / "state")
    report = run(tmp_path, engine)
    [row] = report.rows
    assert row["drift"] == want
    assert report.exit_code == (2 if engine.down else 1)


def test_incomplete(tmp_path: Path) -> None:
    record(tmp_path / "state", state=ADDING, endpoint_id="", ips=[])
    [row] = run(tmp_path, good_engine(attached=False)).rows
    assert row["drift"] == ["incomplete"]


@pytest.mark.parametrize("state", ["deleting", "sandbox-gone"])
def test_pending_work_is_incomplete(tmp_path: Path, state: str) -> None:
    record(tmp_path / "state", state=state)
    [row] = run(tmp_path, good_engine()).rows
    assert row["state"] == state and "incomplete" in row["drift"]


def test_netns(tmp_path: Path) -> None:
    own = "/proc/self/ns/net"
    dev, ino = netns.identity(own) or (0, 0)
    record(tmp_path / "state", netns=own, netns_dev=dev, netns_ino=ino)
    record(tmp_path / "state", ifname="eth1", netns=str(tmp_path / "gone"))
    record(tmp_path / "state", ifname="eth2", netns=own, netns_dev=dev, netns_ino=ino + 1)
    rows = run(tmp_path, good_engine()).rows
    assert [(r["ifname"], r["netnsExists"]) for r in rows] == [
        ("eth0", True), ("eth1", False), ("eth2", False)]
    assert "netns-gone" in rows[1]["drift"] and "netns-gone" in rows[2]["drift"]


def test_runtime_cache(tmp_path: Path) -> None:
    state = tmp_path / "state"
    record(state)
    path = cache_file(tmp_path / "cache", ["10.240.0.5/24"])
    [row] = run(tmp_path, good_engine()).rows
    assert row["runtime"] == {"cacheFile": str(path), "ips": ["10.240.0.5/24"],
                              "mac": "02:42:0a:f0:00:05", "netns": ""}
    assert row["drift"] == []
    cache_file(tmp_path / "cache", ["10.240.0.77/24"])
    [row] = run(tmp_path, good_engine()).rows
    assert row["drift"] == ["runtime-differs"]


def test_runtime_only_needs_our_state_dir(tmp_path: Path) -> None:
    cache_file(tmp_path / "cache", ["10.240.0.5/24"], cid="elsewhere")
    assert run(tmp_path, good_engine()).rows == []  # default stateDir: not ours
    cache_file(tmp_path / "cache", ["10.240.0.6/24"], cid="ours",
               state_dir=str(tmp_path / "state"))
    [row] = run(tmp_path, good_engine()).rows
    assert (row["containerId"], row["state"], row["drift"]) == ("ours", None, ["runtime-only"])


def test_unreadable_and_foreign_cache_files(tmp_path: Path) -> None:
    d = tmp_path / "cache"
    d.mkdir()
    (d / "garbage").write_text("{not json")
    (d / "other").write_text(json.dumps({"kind": "somethingElse"}))
    entries, warnings = resultcache.read_runtime_cache([str(d), str(tmp_path / "missing")])
    assert entries == [] and len(warnings) == 1 and "garbage" in warnings[0]


@pytest.mark.parametrize(
    ("target", "hits"),
    [("c" * 12, 2), (f"{'c' * 64}/eth1", 1), ("pod1", 2), ("nope", 0), ("/eth0", 0)],
)
def test_filter(tmp_path: Path, target: str, hits: int) -> None:
    record(tmp_path / "state")
    record(tmp_path / "state", ifname="eth1")
    assert len(run(tmp_path, good_engine(), target=target).rows) == hits


def test_filter_by_netns_path(tmp_path: Path) -> None:
    from cni2cnm.ops import netns_container_id

    record(tmp_path / "state", netns="/run/netns/a")
    record(tmp_path / "state", container_id=netns_container_id("/run/netns/b"), netns="")
    assert len(run(tmp_path, good_engine(), target="/run/netns/a").rows) == 1
    assert len(run(tmp_path, good_engine(), target="/run/netns/b").rows) == 1
    assert len(run(tmp_path, good_engine(), target="/run/netns/c").rows) == 0


def test_filter_by_network(tmp_path: Path) -> None:
    record(tmp_path / "state")
    record(tmp_path / "state", network="other", docker_network="x", network_name="x")
    assert len(run(tmp_path, good_engine(), network="pods").rows) == 1


def test_result_view_versions() -> None:
    r020 = {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}, "ip6": {"ip": "fd00::2/64"}}
    assert resultcache.result_view(r020, "eth0") == (["10.0.0.2/24", "fd00::2/64"], "")
    chained = {"interfaces": [{"name": "eth0"}, {"name": "eth0", "sandbox": "/x", "mac": "AA"}],
               "ips": [{"address": "10.0.0.1/24", "interface": 0},
                       {"address": "10.0.0.2/24", "interface": 1}]}
    assert resultcache.result_view(chained, "eth0") == (["10.0.0.2/24"], "aa")
    bare = {"ips": [{"address": "10.0.0.3/24"}]}
    assert resultcache.result_view(bare, "eth0") == (["10.0.0.3/24"], "")
    assert resultcache.result_view(None, "eth0") == ([], "")


def test_table_rows() -> None:
    row = {"containerId": CID, "ifname": "eth0", "network": "pods",
           "dockerContainer": {"name": "pod1", "id": CID}, "state": "attached",
           "ips": ["10.0.0.2/24"], "mac": "m", "mode": "container", "ageSeconds": 7200,
           "drift": ["ips-differ"], "dockerNetwork": {"name": "pods"},
           "engine": None, "runtime": None, "netns": "", "endpointId": ""}
    headers, [cells] = table_rows([row], wide=False)
    assert headers[-1] == "DRIFT" and cells[0] == CID[:12] and cells[3] == f"pod1 ({CID[:12]})"
    assert cells[8] == "2h" and cells[-1] == "ips-differ"
    headers, [cells] = table_rows([row], wide=True)
    assert cells[0] == CID and "RUNTIME" in headers


def test_store_error_is_raised(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "attachments.db").write_text("this is not sqlite" * 100)
    with pytest.raises(StoreError):
        ops.read_records(str(state))
