"""ADD, DEL and CHECK for containers Docker knows, run as a CNI runtime runs the plugin."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from c2ctest import busybox_container, pause_container
from pluginrun import Plugin, cri_args, endpoint, ip_addrs, proc_netns

ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.fixture
def pod(resources: Any, images: Any) -> Any:
    return pause_container(resources, images)


def add_cri(plugin: Plugin, pod: Any, **kw: Any) -> Any:
    return plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id), **kw)


def none_attached(pod: Any) -> bool:
    pod.reload()
    return list(pod.attrs["NetworkSettings"]["Networks"]) == ["none"]


# ---- ADD, the cri-dockerd way ------------------------------------------------------------


def test_cri_dockerd_pod_lifecycle(plugin: Plugin, pod: Any, net: Any) -> None:
    netns = proc_netns(pod)
    res = add_cri(plugin, pod).ok().doc
    assert res["cniVersion"] == "1.0.0"
    [iface] = res["interfaces"]
    assert iface["name"] == "eth0" and iface["sandbox"] == netns
    [ip] = res["ips"]
    ep = endpoint(pod, net.name)
    assert ep and ep["EndpointID"]
    assert ip["address"] == f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
    assert ip["gateway"] == ep["Gateway"] and ip["interface"] == 0
    assert iface["mac"] == ep["MacAddress"]
    inside = ip_addrs(netns)
    assert inside["eth0"]["addrs"] == [ip["address"]]
    assert inside["eth0"]["mac"] == iface["mac"]
    assert {"dst": "0.0.0.0/0", "gw": ep["Gateway"]} in res["routes"]
    [rec] = plugin.records()
    assert (rec.state, rec.docker_id, rec.docker_name) == ("attached", pod.id, pod.name)
    assert rec.ips == [ip["address"]] and rec.endpoint_id == ep["EndpointID"]

    plugin.run("CHECK", pod.id, netns, cni_args=cri_args(pod.id), prev=res).silent()
    plugin.run("DEL", pod.id, netns, cni_args=cri_args(pod.id), prev=res).silent()
    assert endpoint(pod, net.name) is None
    assert "eth0" not in ip_addrs(netns)
    assert plugin.records() == []
    plugin.run("DEL", pod.id, netns, cni_args=cri_args(pod.id), prev=res).silent()


def test_add_result_in_every_version(
    docker_host: str, resources: Any, images: Any, net: Any
) -> None:
    state = str(resources.tmpdir())
    for version in ALL_VERSIONS:
        pod = pause_container(resources, images)
        plugin = Plugin(docker_host, state, net.name, cni_version=version)
        res = add_cri(plugin, pod).ok().doc
        ep = endpoint(pod, net.name)
        addr = f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
        assert res["cniVersion"] == version
        if version in ("0.1.0", "0.2.0"):
            assert res["ip4"] == {
                "ip": addr,
                "gateway": ep["Gateway"],
                "routes": [{"dst": "0.0.0.0/0", "gw": ep["Gateway"]}],
            }
            assert "interfaces" not in res and "ips" not in res
        else:
            want = {"address": addr, "gateway": ep["Gateway"], "interface": 0}
            if version in ("0.3.0", "0.3.1", "0.4.0"):
                want = {"version": "4", **want}
            assert res["ips"] == [want]
            assert ("mtu" in res["interfaces"][0]) == (version == "1.1.0")
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            plugin.run("CHECK", pod.id, proc_netns(pod), prev=res).silent()
        plugin.run("DEL", pod.id, proc_netns(pod), prev=res).silent()
        assert endpoint(pod, net.name) is None


def test_prev_result_is_merged(plugin: Plugin, pod: Any) -> None:
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "sandbox": proc_netns(pod)}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}],
        "dns": {"nameservers": ["10.96.0.10"]},
    }
    res = add_cri(plugin, pod, prev=prev).ok().doc
    assert [i["name"] for i in res["interfaces"]] == ["lo", "eth0"]
    assert res["ips"][0] == {"address": "127.0.0.1/8", "interface": 0}
    assert res["ips"][1]["interface"] == 1
    assert res["dns"] == {"nameservers": ["10.96.0.10"]}


# ---- finding the sandbox by namespace only -----------------------------------------------


def test_cnitool_style_id_with_proc_netns(plugin: Plugin, pod: Any, net: Any) -> None:
    cid = "cnitool-" + "3f" * 10
    netns = proc_netns(pod)
    res = plugin.run("ADD", cid, netns).ok().doc
    assert endpoint(pod, net.name)["EndpointID"]
    assert ip_addrs(netns)["eth0"]["addrs"] == [res["ips"][0]["address"]]
    [rec] = plugin.records()
    assert rec.container_id == cid and rec.docker_id == pod.id
    plugin.run("CHECK", cid, netns, prev=res).silent()
    plugin.run("DEL", cid, netns, prev=res).silent()
    assert endpoint(pod, net.name) is None


def test_ip_netns_bind_mount_of_container(
    plugin: Plugin, pod: Any, net: Any, resources: Any
) -> None:
    netns = resources.attach_netns(pod)
    cid = "cnitool-" + "a1" * 10
    res = plugin.run("ADD", cid, netns).ok().doc
    assert res["interfaces"][0]["sandbox"] == netns
    assert ip_addrs(netns)["eth0"]["addrs"] == [res["ips"][0]["address"]]
    plugin.run("DEL", cid, netns, prev=res).silent()
    assert endpoint(pod, net.name) is None


def test_netns_of_another_container_is_refused(
    plugin: Plugin, pod: Any, resources: Any, images: Any
) -> None:
    other = pause_container(resources, images)
    out = plugin.run("ADD", pod.id, proc_netns(other))
    assert "not the network namespace" in out.error(4)["details"]
    assert none_attached(pod) and none_attached(other)
    assert plugin.records() == []


# ---- what the runtime can ask for --------------------------------------------------------


def test_static_ipv4_from_runtime_config(plugin: Plugin, pod: Any, net: Any) -> None:
    subnet_prefix = net.attrs["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0]
    want = f"{subnet_prefix}.77"
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [f"{want}/24"]})
    res = add_cri(plugin, pod, conf=conf).ok().doc
    assert res["ips"][0]["address"] == f"{want}/24"
    assert endpoint(pod, net.name)["IPAddress"] == want


def test_static_ip_from_cni_args(plugin: Plugin, pod: Any, net: Any) -> None:
    want = net.attrs["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0] + ".78"
    res = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=f"IP={want}").ok().doc
    assert res["ips"][0]["address"] == f"{want}/24"


def test_dual_stack_with_static_ipv6(docker_host: str, resources: Any, pod: Any) -> None:
    net = resources.network(ipv6=True)
    plugin = Plugin(docker_host, str(resources.tmpdir()), net.name, cni_version="1.1.0")
    v6_subnet = next(c["Subnet"] for c in net.attrs["IPAM"]["Config"] if ":" in c["Subnet"])
    want6 = v6_subnet.split("/")[0] + "42"
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [want6]})
    res = add_cri(plugin, pod, conf=conf).ok().doc
    addrs = sorted(ip["address"] for ip in res["ips"])
    ep = endpoint(pod, net.name)
    assert ep["GlobalIPv6Address"] == want6
    assert addrs == sorted([f"{ep['IPAddress']}/24", f"{want6}/64"])
    assert sorted(ip_addrs(proc_netns(pod))["eth0"]["addrs"]) == addrs
    v6 = next(ip for ip in res["ips"] if ":" in ip["address"])
    assert v6["gateway"] == ep["IPv6Gateway"]
    plugin.run("CHECK", pod.id, proc_netns(pod), prev=res).silent()
    plugin.run("DEL", pod.id, proc_netns(pod), prev=res).silent()
    assert endpoint(pod, net.name) is None


def test_aliases_resolve_from_another_container(
    plugin: Plugin, pod: Any, net: Any, resources: Any, images: Any
) -> None:
    conf = plugin.conf(
        aliases=["db-primary"],
        capabilities={"aliases": True},
        runtimeConfig={"aliases": ["pod-alias"]},
    )
    res = add_cri(plugin, pod, conf=conf).ok().doc
    ip = res["ips"][0]["address"].split("/")[0]
    client = busybox_container(resources, images, network=net.name)
    for alias in ("db-primary", "pod-alias"):
        code, out = client.exec_run(["nslookup", alias, "127.0.0.11"])
        assert code == 0 and ip in out.decode(), out.decode()


def test_mac_request_ignored_by_engine_rolls_back(
    plugin: Plugin, pod: Any, net: Any, docker_client: Any
) -> None:
    api = tuple(int(x) for x in docker_client.api.api_version.split("."))
    conf = plugin.conf(capabilities={"mac": True}, runtimeConfig={"mac": "02:42:aa:bb:cc:dd"})
    out = add_cri(plugin, pod, conf=conf)
    if api >= (1, 54):
        assert out.ok().doc["interfaces"][0]["mac"] == "02:42:aa:bb:cc:dd"
        return
    details = out.error(102)["details"]
    assert "02:42:aa:bb:cc:dd" in details and "1.54" in details
    assert none_attached(pod) and endpoint(pod, net.name) is None
    assert plugin.records() == []


def test_wrong_interface_name_rolls_back(
    plugin: Plugin, pod: Any, net: Any, docker_client: Any
) -> None:
    api = tuple(int(x) for x in docker_client.api.api_version.split("."))
    out = plugin.run("ADD", pod.id, proc_netns(pod), ifname="net1")
    if api >= (1, 48):
        assert out.ok().doc["interfaces"][0]["name"] == "net1"
        return
    details = out.error(102)["details"]
    assert "eth0" in details and "net1" in details and "1.48" in details
    assert none_attached(pod) and endpoint(pod, net.name) is None
    assert "eth0" not in ip_addrs(proc_netns(pod))
    assert plugin.records() == []
    # Refused before connecting, so Docker's name counter is untouched: eth0 still works.
    assert add_cri(plugin, pod).ok().doc["interfaces"][0]["name"] == "eth0"


def test_interface_name_docker_did_not_choose_rolls_back(
    plugin: Plugin, pod: Any, net: Any, docker_client: Any
) -> None:
    api = tuple(int(x) for x in docker_client.version()["ApiVersion"].split("."))
    # A first connect + disconnect moves Docker's counter on: without a name, the next
    # interface is eth1.
    none = docker_client.networks.get("none")
    none.disconnect(pod.id)
    net.connect(pod.id)
    net.disconnect(pod.id)
    none.connect(pod.id)
    out = add_cri(plugin, pod)
    if api >= (1, 48):  # the engine names it as asked, whatever its counter says
        assert out.ok().doc["interfaces"][0]["name"] == "eth0"
        assert sorted(ip_addrs(proc_netns(pod))) == ["eth0", "lo"]
        return
    details = out.error(102)["details"]
    assert "Docker named the interface eth1" in details and "eth0" in details
    assert endpoint(pod, net.name) is None and plugin.records() == []
    assert none_attached(pod)
    assert not any(n.startswith("eth") for n in ip_addrs(proc_netns(pod)))


def test_existing_interface_name_is_an_error(plugin: Plugin, pod: Any, net: Any) -> None:
    out = plugin.run("ADD", pod.id, proc_netns(pod), ifname="lo")
    assert "lo already exists" in out.error(101)["details"]
    assert none_attached(pod) and plugin.records() == []


def test_taken_ip_leaves_no_record(
    plugin: Plugin, pod: Any, net: Any, resources: Any, images: Any
) -> None:
    first = pause_container(resources, images)
    taken = add_cri(plugin, first).ok().doc["ips"][0]["address"]
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [taken]})
    out = add_cri(plugin, pod, conf=conf)
    assert f"{taken.split('/')[0]} is already in use" in out.error(7)["details"]
    assert first.name in out.error(7)["details"]
    assert none_attached(pod)
    assert [r.docker_id for r in plugin.records()] == [first.id]


def test_ip_outside_subnet_is_invalid_config(plugin: Plugin, pod: Any) -> None:
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": ["10.99.99.99/24"]})
    out = add_cri(plugin, pod, conf=conf)
    assert "does not belong to any subnet" in out.error(7)["details"]
    assert none_attached(pod) and plugin.records() == []


def test_unknown_network(plugin: Plugin, pod: Any) -> None:
    out = add_cri(plugin, pod, conf=plugin.conf(network="c2ct-no-such-network"))
    assert "c2ct-no-such-network" in out.error(7)["details"]
    assert none_attached(pod) and plugin.records() == []


def test_unknown_container(plugin: Plugin, resources: Any) -> None:
    # mode "container": a namespace no Docker container owns is not attached by proxy.
    netns = resources.netns()
    out = plugin.run("ADD", "0123456789ab" * 5 + "abcd", netns,
                     conf=plugin.conf(mode="container"))
    details = out.error(3)["details"]
    assert "0123456789ab" in details and netns in details


def test_host_network_container_is_refused(plugin: Plugin, resources: Any, images: Any) -> None:
    c = resources.container(images.pause, network_mode="host")
    out = plugin.run("ADD", c.id, proc_netns(c))
    assert "network mode host" in out.error(100)["details"]
    assert plugin.records() == []


def test_container_mode_is_refused(plugin: Plugin, pod: Any, resources: Any, images: Any) -> None:
    c = resources.container(images.pause, network_mode=f"container:{pod.id}")
    out = plugin.run("ADD", c.id, proc_netns(pod))
    assert "container:" in out.error(100)["details"]
    assert none_attached(pod) and plugin.records() == []


# ---- DEL when what it would remove is already gone ----------------------------------------


@pytest.fixture
def attached(plugin: Plugin, pod: Any) -> dict[str, Any]:
    return add_cri(plugin, pod).ok().doc


def test_del_without_any_record(plugin: Plugin, pod: Any) -> None:
    plugin.run("DEL", pod.id, proc_netns(pod)).silent()
    assert none_attached(pod)


def test_del_after_container_removed(
    plugin: Plugin, pod: Any, attached: Any, docker_client: Any, net: Any
) -> None:
    netns = proc_netns(pod)
    pod.remove(force=True)
    plugin.run("DEL", pod.id, netns, prev=attached).silent()
    assert plugin.records() == []
    net.reload()
    assert net.attrs["Containers"] == {}


def test_del_after_network_removed(plugin: Plugin, pod: Any, attached: Any, net: Any) -> None:
    net.disconnect(pod.id, force=True)
    net.remove()
    plugin.run("DEL", pod.id, proc_netns(pod), prev=attached).silent()
    assert plugin.records() == []


def test_del_when_endpoint_already_disconnected(
    plugin: Plugin, pod: Any, attached: Any, net: Any
) -> None:
    net.disconnect(pod.id)
    plugin.run("DEL", pod.id, proc_netns(pod), prev=attached).silent()
    assert plugin.records() == []


def test_del_with_empty_netns(plugin: Plugin, pod: Any, attached: Any, net: Any) -> None:
    # cri-dockerd sends an empty CNI_NETNS when the pause container already died.
    plugin.run("DEL", pod.id, "", prev=attached).silent()
    assert endpoint(pod, net.name) is None and plugin.records() == []


def test_del_with_missing_netns_path(plugin: Plugin, pod: Any, attached: Any, net: Any) -> None:
    plugin.run("DEL", pod.id, "/run/netns/c2ct-gone", prev=attached).silent()
    assert endpoint(pod, net.name) is None and plugin.records() == []


def test_del_without_prev_result_twice(plugin: Plugin, pod: Any, attached: Any, net: Any) -> None:
    for _ in range(2):
        plugin.run("DEL", pod.id, proc_netns(pod)).silent()
    assert endpoint(pod, net.name) is None and plugin.records() == []


def test_del_with_engine_unreachable_keeps_record(
    plugin: Plugin, pod: Any, attached: Any, net: Any
) -> None:
    dead = plugin.conf(dockerHost="unix:///run/c2ct-no-engine.sock")
    out = plugin.run("DEL", pod.id, proc_netns(pod), prev=attached, conf=dead)
    assert "c2ct-no-engine.sock" in out.error(11)["details"]
    assert len(plugin.records()) == 1
    plugin.run("DEL", pod.id, proc_netns(pod), prev=attached).silent()
    assert endpoint(pod, net.name) is None and plugin.records() == []


def test_del_finds_the_engine_the_attachment_was_made_on(
    plugin: Plugin, pod: Any, attached: Any, net: Any
) -> None:
    # podman's cleanup process runs DEL without the DOCKER_HOST that ADD had.
    out = plugin.run("DEL", pod.id, proc_netns(pod), prev=attached, env={"DOCKER_HOST": ""})
    out.silent()
    assert endpoint(pod, net.name) is None and plugin.records() == []


def test_del_does_not_touch_a_connection_it_did_not_make(
    plugin: Plugin, resources: Any, images: Any, net: Any
) -> None:
    c = busybox_container(resources, images, network=net.name)
    out = plugin.run("ADD", c.id, proc_netns(c))
    out.error(101)  # eth0 exists already
    plugin.run("DEL", c.id, proc_netns(c)).silent()
    assert endpoint(c, net.name)["EndpointID"]


# ---- CHECK --------------------------------------------------------------------------------


def test_check_fails_when_container_stopped(plugin: Plugin, pod: Any, attached: Any) -> None:
    netns = proc_netns(pod)
    pod.stop(timeout=1)
    assert "exited" in plugin.run("CHECK", pod.id, netns, prev=attached).error(103)["details"]


def test_check_fails_when_container_gone(plugin: Plugin, pod: Any, attached: Any) -> None:
    netns = proc_netns(pod)
    pod.remove(force=True)
    out = plugin.run("CHECK", pod.id, netns, prev=attached)
    assert "no longer exists" in out.error(103)["details"]


def test_check_fails_when_endpoint_detached(
    plugin: Plugin, pod: Any, attached: Any, net: Any
) -> None:
    net.disconnect(pod.id)
    out = plugin.run("CHECK", pod.id, proc_netns(pod), prev=attached)
    assert "not attached" in out.error(103)["details"]


def test_check_fails_when_prev_result_ips_differ(plugin: Plugin, pod: Any, attached: Any) -> None:
    prev = {**attached, "ips": [{**attached["ips"][0], "address": "10.1.2.3/24"}]}
    out = plugin.run("CHECK", pod.id, proc_netns(pod), prev=prev)
    assert "10.1.2.3/24" in out.error(103)["details"]


def test_check_fails_when_prev_result_mac_differs(plugin: Plugin, pod: Any, attached: Any) -> None:
    iface = {**attached["interfaces"][0], "mac": "02:00:00:00:00:01"}
    out = plugin.run("CHECK", pod.id, proc_netns(pod), prev={**attached, "interfaces": [iface]})
    assert "02:00:00:00:00:01" in out.error(103)["details"]


def test_check_fails_when_interface_missing(plugin: Plugin, pod: Any, attached: Any) -> None:
    netns = proc_netns(pod)

    def ip(*argv: str) -> None:
        subprocess.run(["nsenter", f"--net={netns}", "ip", *argv], check=True)

    ip("link", "set", "eth0", "down")
    ip("link", "set", "eth0", "name", "c2ctmp0")
    try:
        out = plugin.run("CHECK", pod.id, netns, prev=attached)
        assert "no interface eth0" in out.error(103)["details"]
    finally:
        ip("link", "set", "c2ctmp0", "name", "eth0")
        ip("link", "set", "eth0", "up")


def test_check_fails_when_address_removed(plugin: Plugin, pod: Any, attached: Any) -> None:
    netns = proc_netns(pod)
    addr = attached["ips"][0]["address"]
    subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "addr", "del", addr, "dev", "eth0"], check=True
    )
    out = plugin.run("CHECK", pod.id, netns, prev=attached)
    assert addr in out.error(103)["details"]


def test_check_fails_when_engine_unreachable(plugin: Plugin, pod: Any, attached: Any) -> None:
    dead = plugin.conf(dockerHost="unix:///run/c2ct-no-engine.sock")
    plugin.run("CHECK", pod.id, proc_netns(pod), prev=attached, conf=dead).error(11)


def test_check_without_prev_result(plugin: Plugin, pod: Any, attached: Any) -> None:
    plugin.run("CHECK", pod.id, proc_netns(pod)).error(7)
