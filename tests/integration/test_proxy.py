"""Proxy sandboxes: namespaces Docker does not own, attached to Docker networks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from c2ctest import busybox_container
from pluginrun import Plugin, endpoint, ip_addrs

from cni2cnm.store import Store

CID = "cnitool-" + "7c" * 10


def remove_sandboxes(docker_client: Any, net: Any) -> None:
    """Sandboxes are the plugin's, not the test's: remove any a failed test left."""
    for c in sandboxes(docker_client, net):
        c.remove(force=True)


@pytest.fixture
def plugin(docker_host: str, resources: Any, net: Any, docker_client: Any) -> Plugin:
    resources.add_cleanup(lambda: remove_sandboxes(docker_client, net))
    return Plugin(docker_host, str(resources.tmpdir()), net.name, cni_version="1.1.0",
                  conf_extra={"sandboxImage": "local/pause:3.10"})


@pytest.fixture
def ns(resources: Any) -> str:
    return resources.netns()


def sandboxes(docker_client: Any, net: Any) -> list[Any]:
    return docker_client.containers.list(
        all=True, filters={"label": f"io.cni2cnm.network={net.name}"})


def routes(netns: str) -> str:
    return subprocess.run(["nsenter", f"--net={netns}", "ip", "route"], capture_output=True,
                          text=True, check=True).stdout


def listen_in_netns(resources: Any, netns: str, port: int, reply: str) -> None:
    """A one-shot TCP server in the namespace (busybox nc), killed at teardown."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={netns}", "busybox", "sh", "-c",
         f"echo {reply} | busybox nc -l -p {port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resources.add_cleanup(lambda: (proc.kill(), proc.wait()))
    time.sleep(0.3)


def test_ip_netns_namespace_reachable_by_tcp(plugin: Plugin, ns: str, net: Any,
                                             resources: Any, images: Any,
                                             docker_client: Any) -> None:
    res = plugin.run("ADD", CID, ns).ok().doc
    [iface] = res["interfaces"]
    assert iface["name"] == "eth0" and iface["sandbox"] == ns and iface["mtu"] == 1500
    addr = res["ips"][0]["address"]
    gw = res["ips"][0]["gateway"]
    assert ip_addrs(ns)["eth0"] == {"mac": iface["mac"], "addrs": [addr]}
    assert f"default via {gw} dev eth0" in routes(ns)
    assert {"dst": "0.0.0.0/0", "gw": gw, "table": 254, "scope": 0} in res["routes"]
    [rec] = plugin.records()
    assert rec.mode == "proxy" and rec.sandbox_name.startswith("cni2cnm-")
    [sandbox] = sandboxes(docker_client, net)
    assert sandbox.id == rec.sandbox_id
    assert endpoint(sandbox, net.name)["IPAddress"] == addr.split("/")[0]

    # Docker container -> namespace
    listen_in_netns(resources, ns, 8080, "from-netns")
    client = busybox_container(resources, images, network=net.name)
    code, out = client.exec_run(["nc", "-w", "3", addr.split("/")[0], "8080"])
    assert code == 0 and out.decode().strip() == "from-netns"
    # namespace -> Docker container
    client.exec_run(["sh", "-c", "echo from-docker | nc -l -p 9090"], detach=True)
    time.sleep(0.3)
    client.reload()
    peer = client.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    got = subprocess.run(["nsenter", f"--net={ns}", "busybox", "nc", "-w", "3", peer, "9090"],
                         capture_output=True, text=True, timeout=30)
    assert got.stdout.strip() == "from-docker"

    plugin.run("CHECK", CID, ns, prev=res).silent()
    plugin.run("DEL", CID, ns, prev=res).silent()
    assert "eth0" not in ip_addrs(ns)
    assert sandboxes(docker_client, net) == []
    assert plugin.records() == []
    net.reload()
    assert list(net.attrs["Containers"]) == [client.id]  # the sandbox's endpoint is gone


def test_static_ip_and_dual_stack(docker_host: str, resources: Any, ns: str,
                                  docker_client: Any) -> None:
    net = resources.network(ipv6=True)
    resources.add_cleanup(lambda: remove_sandboxes(docker_client, net))
    plugin = Plugin(docker_host, str(resources.tmpdir()), net.name, cni_version="1.0.0",
                    conf_extra={"sandboxImage": "local/pause:3.10", "mode": "proxy"})
    subnets = {(":" in c["Subnet"]): c["Subnet"] for c in net.attrs["IPAM"]["Config"]}
    want4 = subnets[False].rsplit(".", 1)[0] + ".44"
    want6 = subnets[True].split("/")[0] + "44"
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [want4, want6]})
    res = plugin.run("ADD", CID, ns, ifname="net1", conf=conf).ok().doc
    assert res["interfaces"][0]["name"] == "net1"  # any name: the plugin names it itself
    assert sorted(ip["address"] for ip in res["ips"]) == sorted([f"{want4}/24",
                                                                 f"{want6}/64"])
    assert sorted(ip_addrs(ns)["net1"]["addrs"]) == sorted([f"{want4}/24", f"{want6}/64"])
    v6routes = subprocess.run(["nsenter", f"--net={ns}", "ip", "-6", "route"],
                              capture_output=True, text=True, check=True).stdout
    v6gw = next(ip["gateway"] for ip in res["ips"] if ":" in ip["address"])
    assert f"default via {v6gw} dev net1" in v6routes
    plugin.run("CHECK", CID, ns, ifname="net1", prev=res).silent()
    plugin.run("DEL", CID, ns, ifname="net1", prev=res).silent()
    assert sandboxes(docker_client, net) == []


@pytest.mark.parametrize("ifname", ["net@1", "net+1", "ä1"])
def test_interface_names_docker_refuses_in_container_names(plugin: Plugin, ns: str, net: Any,
                                                           docker_client: Any,
                                                           ifname: str) -> None:
    """The spec allows these interface names; dockerd refuses them in a container name, so
    the sandbox's name must not carry them as they are."""
    res = plugin.run("ADD", CID, ns, ifname=ifname).ok().doc
    assert res["interfaces"][0]["name"] == ifname
    assert ip_addrs(ns)[ifname]["addrs"] == [res["ips"][0]["address"]]
    [sandbox] = sandboxes(docker_client, net)
    assert sandbox.labels["io.cni2cnm.ifname"] == ifname
    plugin.run("CHECK", CID, ns, ifname=ifname, prev=res).silent()
    plugin.run("DEL", CID, ns, ifname=ifname, prev=res).silent()
    assert sandboxes(docker_client, net) == [] and ifname not in ip_addrs(ns)


def test_del_with_namespace_deleted_and_twice(plugin: Plugin, ns: str, net: Any,
                                              docker_client: Any, resources: Any) -> None:
    res = plugin.run("ADD", CID, ns).ok().doc
    subprocess.run(["ip", "netns", "delete", ns.rsplit("/", 1)[1]], check=True)
    # The interface vanished with the namespace: dockerd still removes the sandbox and
    # releases the address.
    plugin.run("DEL", CID, ns, prev=res).silent()
    plugin.run("DEL", CID, ns, prev=res).silent()
    assert sandboxes(docker_client, net) == [] and plugin.records() == []
    net.reload()
    assert net.attrs["Containers"] == {}
    # The address is free again: a static request for it succeeds.
    want = res["ips"][0]["address"]
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [want]})
    again = plugin.run("ADD", CID, resources.netns(), conf=conf).ok().doc
    assert again["ips"][0]["address"] == want


def add_then_remove_the_sandbox(plugin: Plugin, ns: str, net: Any,
                                docker_client: Any) -> dict[str, Any]:
    """ADD's result, once its sandbox has been removed behind the plugin's back."""
    res = plugin.run("ADD", CID, ns).ok().doc
    [sandbox] = sandboxes(docker_client, net)
    sandbox.remove(force=True)
    return res


def test_del_after_sandbox_removed_by_hand(plugin: Plugin, ns: str, net: Any,
                                           docker_client: Any) -> None:
    res = add_then_remove_the_sandbox(plugin, ns, net, docker_client)
    plugin.run("DEL", CID, ns, prev=res).silent()
    assert plugin.records() == []


def test_check_fails_when_sandbox_gone(plugin: Plugin, ns: str, net: Any,
                                       docker_client: Any) -> None:
    res = add_then_remove_the_sandbox(plugin, ns, net, docker_client)
    out = plugin.run("CHECK", CID, ns, prev=res)
    assert "has ended" in out.error(103)["details"]
    assert "eth0" not in ip_addrs(ns)  # Docker freed its address: the pod must not keep it


def test_check_fails_when_route_removed(plugin: Plugin, ns: str) -> None:
    res = plugin.run("ADD", CID, ns).ok().doc
    subprocess.run(["ip", "-n", ns.rsplit("/", 1)[1], "route", "del", "default"], check=True)
    out = plugin.run("CHECK", CID, ns, prev=res)
    assert "routes missing" in out.error(103)["details"]


def test_gc_removes_orphan_sandbox_found_by_label(plugin: Plugin, ns: str, net: Any,
                                                  resources: Any, docker_client: Any) -> None:
    plugin.run("ADD", CID, ns).ok()
    # The record is lost: only the labels (network, container, ifname, this store's
    # identity) tell what the sandbox is.
    with Store(plugin.state_dir) as store:
        store.delete(plugin.name, CID, "eth0")
    # Another store on the same engine (another stateDir) never sweeps it.
    other = Plugin(plugin.docker_host, str(resources.tmpdir()), net.name, cni_version="1.1.0",
                   conf_extra=plugin.conf_extra)
    other.run("GC", "", "", ifname="", conf=other.conf()).silent()
    assert len(sandboxes(docker_client, net)) == 1
    keep = {"cni.dev/valid-attachments": [{"containerID": CID, "ifname": "eth0"}]}
    plugin.run("GC", "", "", ifname="", conf=plugin.conf(**keep)).silent()
    assert len(sandboxes(docker_client, net)) == 1  # still valid: kept
    plugin.run("GC", "", "", ifname="", conf=plugin.conf()).silent()
    assert sandboxes(docker_client, net) == []
    net.reload()
    assert net.attrs["Containers"] == {}


def test_gc_removes_stale_proxy_attachment(plugin: Plugin, ns: str, net: Any,
                                           docker_client: Any) -> None:
    plugin.run("ADD", CID, ns).ok()
    plugin.run("GC", "", "", ifname="", conf=plugin.conf()).silent()
    assert sandboxes(docker_client, net) == [] and plugin.records() == []
    assert "eth0" not in ip_addrs(ns)


def test_container_mode_still_refuses_foreign_namespaces(plugin: Plugin, ns: str,
                                                         docker_client: Any,
                                                         net: Any) -> None:
    out = plugin.run("ADD", CID, ns, conf=plugin.conf(mode="container"))
    assert ns in out.error(3)["details"]
    assert sandboxes(docker_client, net) == [] and plugin.records() == []


def test_add_failure_removes_the_sandbox(plugin: Plugin, ns: str, net: Any,
                                         docker_client: Any) -> None:
    """A failure after the sandbox exists (the same on every engine: the name the interface
    is to take appears in CNI_NETNS while ADD runs) is rolled back: the interface goes back
    into the sandbox, the sandbox is removed and its address released, no record stays.
    (What each engine does with a requested MAC: test_engine_contract.py.)"""
    proc = plugin.start_until("after-connect", CID, ns)
    try:
        [sandbox] = sandboxes(docker_client, net)  # started, endpoint made, nothing moved
        assert endpoint(sandbox, net.name)["EndpointID"]
        name = ns.rsplit("/", 1)[1]
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer",
                        "name", "c2ct-peer"], check=True)
        theirs = ip_addrs(ns)["eth0"]["mac"]
    finally:
        proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    err = json.loads(stdout)
    assert err["code"] == 5 and "eth0" in err["details"], err
    assert sandboxes(docker_client, net) == [] and plugin.records() == []
    links = ip_addrs(ns)
    assert sorted(links) == ["c2ct-peer", "eth0", "lo"] and links["eth0"]["mac"] == theirs
    net.reload()
    assert net.attrs["Containers"] == {}  # the sandbox's address is released


def cgroup_value(pid: int, controller: str, name: str) -> str:
    """A cgroup v1 controller's (or the v2 unified) file of the process `pid`."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            v2 = {"pids.max": "pids.max", "memory.limit_in_bytes": "memory.max"}[name]
            return Path(f"/sys/fs/cgroup{path}/{v2}").read_text().strip()
    raise AssertionError(f"no {controller} cgroup for pid {pid}")


@pytest.mark.parametrize(("keys", "pids", "memory"), [
    ({}, 16, 16 << 20), ({"sandboxPidsLimit": 4, "sandboxMemoryMiB": 8}, 4, 8 << 20)])
def test_sandboxes_are_limited(plugin: Plugin, ns: str, net: Any, docker_client: Any,
                               keys: dict[str, int], pids: int, memory: int) -> None:
    """Issue 19, item 10b: a sandbox only holds a namespace; small pids and memory limits,
    enforced by the kernel (the sandbox's cgroup), and pause runs within them."""
    res = plugin.run("ADD", CID, ns, conf=plugin.conf(**keys)).ok().doc
    [sandbox] = sandboxes(docker_client, net)
    host = sandbox.attrs["HostConfig"]
    assert (host["PidsLimit"], host["Memory"]) == (pids, memory)
    pid = sandbox.attrs["State"]["Pid"]
    assert cgroup_value(pid, "pids", "pids.max") == str(pids)
    assert cgroup_value(pid, "memory", "memory.limit_in_bytes") == str(memory)
    plugin.run("CHECK", CID, ns, prev=res, conf=plugin.conf(**keys)).silent()
    plugin.run("DEL", CID, ns, prev=res, conf=plugin.conf(**keys)).silent()
    assert sandboxes(docker_client, net) == []


def crowd(netns: str, count: int) -> None:
    """`count` veth pairs inside the namespace, one end of each up with a route of its own."""
    lines = []
    for i in range(count):
        lines += [f"link add c2cb{i} type veth peer name c2cp{i}", f"link set c2cb{i} up",
                  f"route add 10.99.{i // 250}.{i % 250 + 1}/32 dev c2cb{i}"]
    subprocess.run(["ip", "-n", os.path.basename(netns), "-batch", "-"], input="\n".join(lines),
                   text=True, check=True, timeout=120)


def test_add_into_a_busy_namespace_costs_about_the_same(plugin: Plugin, ns: str,
                                                        resources: Any) -> None:
    """A proxy ADD reads the target's routes once, not once per interface it holds."""
    quiet = resources.netns()
    start = time.monotonic()
    plugin.run("ADD", CID, quiet).ok()
    empty = time.monotonic() - start
    crowd(ns, 600)
    start = time.monotonic()
    res = plugin.run("ADD", "busy" + CID, ns).ok().doc
    busy = time.monotonic() - start
    print(f"proxy ADD: empty namespace {empty:.2f} s, 1200 interfaces + 600 routes {busy:.2f} s")
    assert busy < 2 * empty + 2, (empty, busy)  # one route dump per interface: about +6 s
    assert f"default via {res['ips'][0]['gateway']} dev eth0" in routes(ns)
    assert routes(ns).count("dev c2cb") == 600
    plugin.run("DEL", "busy" + CID, ns).silent()
    plugin.run("DEL", CID, quiet).silent()


def bind_namespace(resources: Any, netns: str) -> Path:
    """A path of the test's own naming `netns` (a bind mount, as `ip netns` makes), unmounted
    at teardown however often it was re-bound."""
    path = resources.tmpdir() / "pod-netns"
    path.touch()
    subprocess.run(["mount", "--bind", netns, str(path)], check=True)

    def unmount() -> None:
        while subprocess.run(["umount", "--lazy", str(path)],
                             capture_output=True).returncode == 0:
            pass

    resources.add_cleanup(unmount)
    return path


def test_add_configures_only_the_namespace_it_checked(plugin: Plugin, resources: Any,
                                                      docker_client: Any, net: Any) -> None:
    """CNI_NETNS names namespace A when ADD checks it, namespace V once the sandbox exists:
    the interface, its address and the default route go to A; V is never changed (nor is it
    by CHECK or DEL, which see that the path no longer names what ADD attached)."""
    first, victim = resources.netns(), resources.netns()
    path = bind_namespace(resources, first)
    proc = plugin.start_until("after-connect", CID, str(path))
    try:
        # lazily: the plugin holds the namespace open (it opened CNI_NETNS once)
        subprocess.run(["umount", "--lazy", str(path)], check=True)
        subprocess.run(["mount", "--bind", victim, str(path)], check=True)
    finally:
        proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, (stdout, stderr)
    res = json.loads(stdout)
    addr = res["ips"][0]["address"]
    assert ip_addrs(first)["eth0"]["addrs"] == [addr]
    assert f"default via {res['ips'][0]['gateway']} dev eth0" in routes(first)
    assert sorted(ip_addrs(victim)) == ["lo"] and routes(victim) == ""
    details = plugin.run("CHECK", CID, str(path), prev=res).error(103)["details"]
    assert "no longer the network namespace" in details
    plugin.run("DEL", CID, str(path), prev=res).silent()
    assert sorted(ip_addrs(victim)) == ["lo"]
    assert sandboxes(docker_client, net) == [] and plugin.records() == []
