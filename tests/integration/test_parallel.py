"""Concurrent invocations, as runtimes make them for different pods at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from c2ctest import pause_container
from pluginrun import Plugin, cri_args, proc_netns


def engine_endpoints(net: Any) -> dict[str, str]:
    """Docker container ID -> EndpointID of everything attached to the network."""
    net.reload()
    return {cid: ep["EndpointID"] for cid, ep in (net.attrs["Containers"] or {}).items()}


def test_twenty_parallel_adds_then_dels(docker_host: str, resources: Any, images: Any) -> None:
    net = resources.network()
    plugin = Plugin(docker_host, str(resources.tmpdir()), net.name)
    pods = [pause_container(resources, images) for _ in range(20)]
    netns = {p.id: proc_netns(p) for p in pods}

    def add(p: Any) -> Any:
        return plugin.run("ADD", p.id, netns[p.id], cni_args=cri_args(p.id, pod=p.name))

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(add, pods))
    docs = [r.ok().doc for r in results]
    ips = [d["ips"][0]["address"] for d in docs]
    assert len(set(ips)) == 20, ips

    records = plugin.records()
    attached = engine_endpoints(net)
    assert {r.docker_id: r.endpoint_id for r in records} == attached
    assert all(r.state == "attached" for r in records)
    assert sorted(r.ips[0] for r in records) == sorted(ips)

    def delete(pair: tuple[Any, dict[str, Any]]) -> Any:
        p, doc = pair
        return plugin.run("DEL", p.id, netns[p.id], cni_args=cri_args(p.id), prev=doc)

    with ThreadPoolExecutor(max_workers=20) as pool:
        for out in pool.map(delete, zip(pods, docs, strict=True)):
            out.silent()
    assert plugin.records() == []
    assert engine_endpoints(net) == {}


def test_same_static_ip_raced_by_two_pods(docker_host: str, resources: Any,
                                          images: Any) -> None:
    net = resources.network()
    plugin = Plugin(docker_host, str(resources.tmpdir()), net.name)
    want = net.attrs["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0] + ".50"
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [f"{want}/24"]})
    pods = [pause_container(resources, images) for _ in range(2)]

    def add(p: Any) -> Any:
        return plugin.run("ADD", p.id, proc_netns(p), conf=conf)

    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(add, pods))
    winners = [p for p, o in zip(pods, outs, strict=True) if o.rc == 0]
    losers = [(p, o) for p, o in zip(pods, outs, strict=True) if o.rc != 0]
    assert len(winners) == 1 and len(losers) == 1
    loser, out = losers[0]
    assert "in use" in out.error(7)["details"].lower()
    loser.reload()
    assert list(loser.attrs["NetworkSettings"]["Networks"]) == ["none"]
    assert [r.docker_id for r in plugin.records()] == [winners[0].id]
    assert set(engine_endpoints(net)) == {winners[0].id}
