"""What cni2cnm guarantees on every engine, and what each engine does where engines differ.

Every test runs on every engine: where engines differ (MAC derivation, a MAC at create vs on
connect, interface naming, stale entries after a failed connect) it branches on the API
version the engine reports (engines.py) and asserts that engine's behaviour, never skips.
CI runs the suite on bookworm's dockerd 20.10 (API 1.41) and on Debian unstable's 28.5
(API 1.51): ``C2C_ENGINE=28 scripts/test.sh tests/integration``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest
from c2ctest import busybox_container, network_subnets, pause_container, unavailable
from engines import (
    API_CONNECT_VALIDATES_IP,
    API_IFNAME,
    API_MAC_AT_CREATE,
    API_MAC_ON_CONNECT,
    API_RANDOM_MAC,
    derived_mac,
    engine_api,
    is_local_unicast,
)
from pluginrun import Plugin, cri_args, endpoint, ip_addrs, plugin_executable, proc_netns

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
