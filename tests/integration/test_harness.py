"""The test harness itself (the throwaway engine, the images, the fixtures and their cleanup),
not cni2cnm: the flow the plugin relies on works on this engine. cni2cnm's own engine
adapter is tested in test_engine_adapter.py."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from typing import Any

import docker
import pytest
import requests
from c2ctest import (
    LABEL,
    PREFIX,
    SESSION_ID,
    Engine,
    Images,
    Resources,
    busybox_container,
    netns_exec,
    network_subnets,
    pause_container,
)

# The engine and fixtures only (no plugin run): the daemon-mode pass skips it.
pytestmark = pytest.mark.own_modes


def _api_version(client: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in client.version()["ApiVersion"].split("."))


def _addrs(target: int | str) -> dict[str, list[dict[str, Any]]]:
    out = netns_exec(target, "ip", "-j", "addr", "show").stdout
    return {link["ifname"]: link.get("addr_info", []) for link in json.loads(out)}


def test_engine_answers(docker_client: Any) -> None:
    assert docker_client.ping() is True
    assert _api_version(docker_client) >= (1, 41)
    info = docker_client.info()
    assert info["ServerVersion"]


def test_local_images_exist(docker_client: Any, images: Images) -> None:
    for name in (images.busybox, images.pause, "registry.k8s.io/pause:3.10"):
        docker_client.images.get(name)
    pause = docker_client.images.get(images.pause)
    assert pause.attrs["Config"]["Entrypoint"] == ["/pause"]
    busybox = docker_client.images.get(images.busybox)
    assert "PATH=/bin" in busybox.attrs["Config"]["Env"]


def test_busybox_has_applets(resources: Resources, images: Images) -> None:
    out = resources.client.containers.run(
        images.busybox,
        ["sh", "-c", "ls /bin | wc -l; which ip nc ping wget"],
        remove=True,
        network_mode="none",
        labels={LABEL: SESSION_ID},
    ).decode()
    lines = out.split()
    assert int(lines[0]) > 200
    assert lines[1:] == ["/bin/ip", "/bin/nc", "/bin/ping", "/bin/wget"]


def test_network_with_explicit_subnet(resources: Resources) -> None:
    net = resources.network()
    (subnet,) = network_subnets(net)
    assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network("10.0.0.0/8"))
    assert net.name.startswith(PREFIX)
    other = resources.network()
    assert network_subnets(other) != [subnet]


def test_dual_stack_network(resources: Resources) -> None:
    net = resources.network(ipv6=True)
    subnets = [ipaddress.ip_network(s) for s in network_subnets(net)]
    assert sorted(s.version for s in subnets) == [4, 6]
    assert net.attrs["EnableIPv6"] is True


def test_pause_container_connect_after_disconnecting_none(
    resources: Resources, images: Images
) -> None:
    """cri-dockerd's sandbox (network none) can join a network once detached from none."""
    net = resources.network()
    (subnet,) = network_subnets(net)
    pod = pause_container(resources, images)
    assert pod.attrs["HostConfig"]["NetworkMode"] == "none"
    assert pod.status == "running"
    pid = pod.attrs["State"]["Pid"]
    assert set(_addrs(pid)) == {"lo"}

    # Connecting while still on "none" is refused by the engine.
    with pytest.raises(docker.errors.APIError) as err:
        net.connect(pod)
    assert err.value.status_code == 400

    resources.client.networks.get("none").disconnect(pod)
    net.connect(pod)
    pod.reload()
    ep = pod.attrs["NetworkSettings"]["Networks"][net.name]
    assert ep["EndpointID"]
    assert ipaddress.ip_address(ep["IPAddress"]) in ipaddress.ip_network(subnet)
    assert ep["MacAddress"]

    addrs = _addrs(pid)
    assert "eth0" in addrs
    assert ep["IPAddress"] in [a["local"] for a in addrs["eth0"]]

    # The sandbox key and /proc/PID/ns/net are the same namespace.
    sandbox_key = pod.attrs["NetworkSettings"]["SandboxKey"]
    st_key, st_proc = os.stat(sandbox_key), os.stat(f"/proc/{pid}/ns/net")
    assert (st_key.st_ino, st_key.st_dev) == (st_proc.st_ino, st_proc.st_dev)

    # Another container on the network reaches it.
    peer = busybox_container(resources, images, network=net.name)
    rc, out = peer.exec_run(["ping", "-c", "1", "-W", "5", ep["IPAddress"]])
    assert rc == 0, out.decode(errors="replace")


def test_pause_exits_zero_on_sigterm(resources: Resources, images: Images) -> None:
    pod = pause_container(resources, images)
    t0 = time.monotonic()
    pod.stop(timeout=10)
    assert time.monotonic() - t0 < 5
    pod.reload()
    assert pod.attrs["State"]["ExitCode"] == 0


def test_netns_and_tmpdir(resources: Resources) -> None:
    path = resources.netns()
    assert path.startswith("/run/netns/" + PREFIX)
    addrs = _addrs(path)
    assert set(addrs) == {"lo"}
    d = resources.tmpdir()
    assert d.is_dir()


def test_resources_clean_up(docker_client: Any, images: Images) -> None:
    res = Resources(docker_client)
    net = res.network()
    pod = pause_container(res, images)
    docker_client.networks.get("none").disconnect(pod)
    net.connect(pod)
    box = busybox_container(res, images, network=net.name)
    ns = res.netns()
    d = res.tmpdir()
    # A container the test connected but did not create through res: the network is still
    # removed (its endpoint is forced off).
    stranger = docker_client.containers.run(
        images.pause,
        detach=True,
        network_mode="none",
        name=f"{PREFIX}stranger-{SESSION_ID}",
        labels={LABEL: SESSION_ID},
    )
    try:
        docker_client.networks.get("none").disconnect(stranger)
        net.connect(stranger)
        res.close()
        res.close()  # idempotent

        names = {c.name for c in docker_client.containers.list(all=True)}
        assert pod.name not in names
        assert box.name not in names
        assert net.name not in {n.name for n in docker_client.networks.list()}
        assert not os.path.exists(ns)
        assert not d.exists()
    finally:
        stranger.remove(force=True)


def test_no_leftovers_from_earlier_tests(docker_client: Any) -> None:
    """Tests before this one (same session) cleaned up after themselves."""
    flt = {"label": f"{LABEL}={SESSION_ID}"}
    assert docker_client.containers.list(all=True, filters=flt) == []
    assert docker_client.networks.list(filters=flt) == []


def test_engine_restart_keeps_networks(
    engine: Engine, resources: Resources, images: Images
) -> None:
    net = resources.network()
    t0 = time.monotonic()
    engine.restart()
    elapsed = time.monotonic() - t0
    assert elapsed < 30
    net.reload()
    assert network_subnets(net)
    # The engine works after the restart.
    pod = pause_container(resources, images)
    assert pod.status == "running"


def test_engine_kill_and_start(engine: Engine, resources: Resources, images: Images) -> None:
    """SIGKILL of dockerd (fault injection) and a start bring back a working engine."""
    net = resources.network()
    pod = pause_container(resources, images)
    engine.kill()
    with pytest.raises((docker.errors.DockerException, requests.exceptions.ConnectionError)):
        engine.client.ping()
    engine.start()
    net.reload()
    pod.reload()
    assert pod.status in ("running", "exited")
    pause_container(resources, images)
