"""What cni2cnm finishes without the runtime, on an engine of the tests' own (issue 20):

1. a DEL that came while dockerd was down (the kubelet's: CNI_NETNS="", cniVersion 0.4.0 with
   a prevResult) is recorded as pending, answered without the phrases runtimes read as
   "already gone", and finished once the engine answers: by the daemon's keeper with no
   further request, or by the next in-process run of any command;
2. a proxy pod never keeps an address Docker freed: after `docker stop` of its sandbox or a
   dockerd restart (no live-restore), its interface is removed (by the daemon within about a
   second; without one by CHECK, DEL or the next run), CHECK reports the sandbox gone, and
   DEL cleans up.

Each test runs the plugin in the mode it names itself (own_modes). The times printed are the
figures README's "State, faults and recovery" quotes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from c2ctest import Resources, pause_container
from daemonrun import Daemon, running_daemon
from pluginrun import Plugin, cri_args, endpoint, ip_addrs, proc_netns
from privateengine import PrivateEngine

pytestmark = pytest.mark.own_modes

ALWAYS = {"Name": "always"}
IN_PROCESS = {"CNI2CNM_DAEMON": "off", "CNI2CNM_DAEMON_SOCKET": ""}
CID = "cnitool-" + "9d" * 10
# What runtimes read in a DEL error as "already gone", never sending the DEL again: the
# dockershim and cri-dockerd 0.4 (deleteFromNetwork), containerd's go-cni (Remove).
MISREAD_AS_GONE = ("no such file or directory", "not found")


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with running_daemon() as d:
        yield d


def plugin_on(peng: PrivateEngine, pres: Resources, pnet: Any, version: str) -> Plugin:
    return Plugin.on(peng.host, pres, pnet.name, cni_version=version,
                     conf_extra={"sandboxImage": peng.images.pause, "dockerTimeout": 10})


def no_misread_phrase(doc: dict[str, Any]) -> None:
    text = json.dumps(doc).lower()
    for phrase in MISREAD_AS_GONE:
        assert phrase not in text, f"{phrase!r} in a DEL error: runtimes never retry it: {doc}"


def engine_gone(peng: PrivateEngine) -> None:
    """dockerd is not there, as while it restarts: killed, its socket removed."""
    peng.down()
    sock = peng.host.removeprefix("unix://")
    if os.path.exists(sock):
        os.unlink(sock)


def until(what: Callable[[], bool], timeout: float = 30.0,
          daemon: Daemon | None = None) -> float:
    """Seconds until `what` holds (polled every 20 ms); fails after `timeout` (with the
    daemon's log, when there is one)."""
    t0 = time.monotonic()
    while not what():
        if time.monotonic() - t0 >= timeout:
            raise AssertionError("timed out" + (f"; the daemon's log:\n{daemon.log_text()[-4000:]}"
                                                if daemon else ""))
        time.sleep(0.02)
    return time.monotonic() - t0


# ---- 1. a DEL while the engine is down ------------------------------------------------------


def kubelet_del_while_engine_down(peng: PrivateEngine, pres: Resources, plugin: Plugin,
                                  env: dict[str, str]) -> Any:
    """ADD a pod, take the engine away, send the kubelet's DEL: pending, code 11."""
    pod = pause_container(pres, peng.images, restart_policy=ALWAYS)
    res = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                     env=env).ok().doc
    engine_gone(peng)
    doc = plugin.run("DEL", pod.id, "", cni_args=cri_args(pod.id), prev=res,
                     env=env).error(11)
    no_misread_phrase(doc)
    assert "recorded this DEL" in doc["details"]
    assert [r.state for r in plugin.records()] == ["deleting"]
    return pod


def test_pending_del_finished_by_the_next_in_process_run(peng: PrivateEngine, pres: Resources,
                                                        pnet: Any) -> None:
    plugin = plugin_on(peng, pres, pnet, "0.4.0")
    pod = kubelet_del_while_engine_down(peng, pres, plugin, IN_PROCESS)
    peng.up()
    peng.wait_running(pod)
    assert endpoint(pod, pnet.name) is not None  # dockerd re-attached it at restart
    other = pause_container(pres, peng.images)
    plugin.run("ADD", other.id, proc_netns(other), cni_args=cri_args(other.id),
               env=IN_PROCESS).ok()
    assert endpoint(pod, pnet.name) is None  # without another DEL of the pod
    assert [r.docker_id for r in plugin.records()] == [other.id]


def test_pending_del_finished_by_the_daemon_alone(peng: PrivateEngine, pres: Resources,
                                                 pnet: Any, daemon: Daemon) -> None:
    plugin = plugin_on(peng, pres, pnet, "0.4.0")
    pod = kubelet_del_while_engine_down(peng, pres, plugin, daemon.env)
    peng.up()  # returns once the engine answers
    took = until(lambda: plugin.records() == [])
    print(f"\nMEASURED pending DEL finished by the daemon {took:.2f} s after dockerd answered")
    peng.wait_running(pod)
    assert endpoint(pod, pnet.name) is None
    assert "finished the pending DEL" in daemon.log_text()


# ---- 2. a proxy pod whose sandbox ends ------------------------------------------------------


def proxy_pod(peng: PrivateEngine, pres: Resources, pnet: Any, env: dict[str, str]
              ) -> tuple[Plugin, str, dict[str, Any], Any]:
    """A pod attached in proxy mode (cniVersion 1.0.0), in a namespace of the test's own: the
    plugin, the namespace, ADD's result and the sandbox."""
    plugin = plugin_on(peng, pres, pnet, "1.0.0")
    ns = pres.netns()
    res = plugin.run("ADD", CID, ns, env=env).ok().doc
    [rec] = plugin.records()
    assert ip_addrs(ns)["eth0"]["addrs"] == [res["ips"][0]["address"]]
    return plugin, ns, res, peng.client.containers.get(rec.sandbox_id)


def interface_gone(ns: str) -> Callable[[], bool]:
    return lambda: "eth0" not in ip_addrs(ns)


def assert_del_cleans_up(peng: PrivateEngine, plugin: Plugin, ns: str, res: dict[str, Any],
                         env: dict[str, str]) -> None:
    plugin.run("DEL", CID, ns, prev=res, env=env).silent()
    assert plugin.records() == [] and set(ip_addrs(ns)) == {"lo"}
    assert peng.client.containers.list(all=True, filters={
        "label": "io.cni2cnm.sandbox=true"}) == []


def test_docker_stop_of_a_sandbox_removes_the_pod_interface_at_once(
        peng: PrivateEngine, pres: Resources, pnet: Any, daemon: Daemon) -> None:
    plugin, ns, res, sandbox = proxy_pod(peng, pres, pnet, daemon.env)
    t0 = time.monotonic()
    sandbox.stop(timeout=0)
    try:
        until(interface_gone(ns), timeout=10, daemon=daemon)
    except AssertionError:
        sandbox.reload()
        raise AssertionError(f"sandbox {sandbox.attrs['State']}; {ip_addrs(ns)}; "
                             f"{plugin.records()}; {daemon.log_text()[-3000:]}") from None
    took = time.monotonic() - t0
    print(f"\nMEASURED docker stop of a sandbox -> pod interface removed by the daemon in "
          f"{took:.2f} s")
    assert took < 5
    until(lambda: [r.state for r in plugin.records()] == ["sandbox-gone"], timeout=5)
    assert "has ended" in plugin.run("CHECK", CID, ns, prev=res,
                                     env=daemon.env).error(103)["details"]
    assert_del_cleans_up(peng, plugin, ns, res, daemon.env)


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_dockerd_restart_removes_proxy_pod_interfaces_with_a_daemon(
        peng: PrivateEngine, pres: Resources, pnet: Any, daemon: Daemon, how: str) -> None:
    plugin, ns, res, _ = proxy_pod(peng, pres, pnet, daemon.env)
    if how == "restart":
        peng.restart()  # SIGTERM, no live-restore: dockerd stops the sandbox as it stops
    else:
        peng.kill()  # the sandbox outlives dockerd ...
        time.sleep(1.5)
        assert "eth0" in ip_addrs(ns)  # ... and the pod keeps its interface meanwhile
        peng.start()  # ... until the new dockerd kills it (no live-restore)
    took = until(interface_gone(ns), timeout=10, daemon=daemon)
    print(f"\nMEASURED dockerd {how} -> pod interface removed by the daemon {took:.2f} s "
          "after dockerd answered")
    until(lambda: [r.state for r in plugin.records()] == ["sandbox-gone"], timeout=5)
    assert_del_cleans_up(peng, plugin, ns, res, daemon.env)


def test_without_a_daemon_check_reports_and_removes_an_ended_sandbox(
        peng: PrivateEngine, pres: Resources, pnet: Any) -> None:
    plugin, ns, res, _ = proxy_pod(peng, pres, pnet, IN_PROCESS)
    peng.restart()
    assert "eth0" in ip_addrs(ns)  # nothing runs to notice: stale until the next run
    details = plugin.run("CHECK", CID, ns, prev=res, env=IN_PROCESS).error(103)["details"]
    assert "has ended" in details and "eth0" not in ip_addrs(ns)
    assert_del_cleans_up(peng, plugin, ns, res, IN_PROCESS)


def test_del_after_the_sandbox_stopped_removes_the_pod_interface(
        peng: PrivateEngine, pres: Resources, pnet: Any) -> None:
    plugin, ns, res, sandbox = proxy_pod(peng, pres, pnet, IN_PROCESS)
    sandbox.stop(timeout=0)
    assert "eth0" in ip_addrs(ns)  # Docker leaves it there, with the freed address
    assert_del_cleans_up(peng, plugin, ns, res, IN_PROCESS)
