"""`cni2cnm serve` on a real engine: the executable forwards to it and prints byte for byte
what it prints in-process; requests run concurrently; SIGTERM finishes what is in flight; a
dead, stopped or killed daemon never stops a pod; other users are refused.

The daemon runs as `python -m cni2cnm.daemon` (the same command as `cni2cnm serve`) on a
socket in a fresh 0700 directory. Whole-suite runs through a daemon: set
CNI2CNM_TEST_DAEMON_SOCKET (see pluginrun.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from c2ctest import network_subnets, pause_container, unique_name
from daemonrun import SOCKET_ENV, Daemon, add_while_the_daemon_dies, running_daemon, start_daemon
from engines import API_RANDOM_MAC, derived_mac, engine_api
from pluginrun import (
    Outcome,
    Plugin,
    cri_args,
    endpoint,
    plugin_executable,
    proc_netns,
    served,
    wait_holding,
)

from cni2cnm.store import Store

# Runs every request both ways by itself: the daemon-mode pass skips it.
pytestmark = pytest.mark.own_modes


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with running_daemon() as d:
        yield d


def via(d: Daemon | None) -> dict[str, str]:
    return d.env if d is not None else {SOCKET_ENV: ""}


def wait_for_log(d: Daemon, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.log_text():
        assert time.monotonic() < deadline, f"{text!r} not in the daemon's log: {d.log_text()}"
        time.sleep(0.05)


# ---- the same bytes as in-process -----------------------------------------------------------


def test_lifecycle_prints_the_same_bytes(daemon: Daemon, plugin: Plugin, net: Any,
                                         resources: Any, images: Any,
                                         docker_client: Any) -> None:
    """One pod in-process, then one through the daemon, with the same static address, CNI
    container ID and namespace path: every answer must be the same bytes, but for the MAC
    the engine gave each endpoint (ADD prints the engine's; engines from API 1.48 pick it at
    random, older ones derive it from the address, so there the bytes are equal as they are)."""
    prefix = network_subnets(net)[0].rsplit(".", 1)[0]
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [f"{prefix}.77/24"]})
    cid, ns = unique_name("cni"), unique_name("ns")
    answers: dict[str, list[tuple[int, str]]] = {}
    macs: dict[str, str] = {}
    for mode, d in (("in-process", None), ("daemon", daemon)):
        pod = pause_container(resources, images)
        netns, args = resources.attach_netns(pod, ns), cri_args(pod.id)
        add = plugin.run("ADD", cid, netns, cni_args=args, conf=conf, env=via(d)).ok()
        macs[mode] = endpoint(pod, net.name)["MacAddress"]
        assert add.doc["interfaces"][0]["mac"] == macs[mode]
        outs = [
            add,
            plugin.run("CHECK", cid, netns, cni_args=args, conf=conf, prev=add.doc, env=via(d)),
            plugin.run("ADD", cid, netns, cni_args=args, conf=conf, env=via(d)),
            plugin.run("STATUS", "", "", conf=plugin.conf(cniVersion="1.1.0"), env=via(d)),
            plugin.run("DEL", cid, netns, cni_args=args, conf=conf, prev=add.doc, env=via(d)),
            plugin.run("DEL", cid, netns, cni_args=args, conf=conf, prev=add.doc, env=via(d)),
        ]
        if d is not None:
            for o in outs:
                served(o)
        answers[mode] = [(o.rc, o.stdout.replace(macs[mode], "<mac>")) for o in outs]
        assert answers[mode][0][1].count("<mac>") == 1
        subprocess.run(["ip", "netns", "delete", ns], check=True)
    assert answers["daemon"] == answers["in-process"]
    if engine_api(docker_client) < API_RANDOM_MAC:
        assert macs["daemon"] == macs["in-process"] == derived_mac(f"{prefix}.77")
    else:
        assert macs["daemon"] != macs["in-process"]
    add_doc = Outcome("ADD", *answers["daemon"][0], "").doc
    assert add_doc["ips"][0]["address"] == f"{prefix}.77/24"
    assert add_doc["interfaces"][0] == {"name": "eth0", "mac": add_doc["interfaces"][0]["mac"],
                                        "sandbox": f"/run/netns/{ns}"}
    assert [rc for rc, _ in answers["daemon"]] == [0, 0, 1, 0, 0, 0]
    assert '"code": 101' in answers["daemon"][2][1]
    assert plugin.records() == []


def test_errors_print_the_same_bytes(daemon: Daemon, plugin: Plugin, resources: Any,
                                     images: Any) -> None:
    pod = pause_container(resources, images)
    netns, args = proc_netns(pod), cri_args(pod.id)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("unknown network", {"conf": plugin.conf(network="c2ct-no-such-network")}),
        ("missing CNI_NETNS", {"netns": ""}),
        ("unsupported version", {"conf": plugin.conf(cniVersion="9.9.9")}),
        ("bad CNI_ARGS", {"cni_args": "FOO=1"}),
        ("address outside the subnet", {"conf": plugin.conf(
            capabilities={"ips": True}, runtimeConfig={"ips": ["192.0.2.7/24"]})}),
        ("CHECK without prevResult", {"command": "CHECK"}),
        ("CHECK of nothing", {"command": "CHECK", "prev": {"cniVersion": "1.0.0"}}),
        ("GC on 1.0.0", {"command": "GC"}),
        ("engine unreachable", {"env": {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}}),
        ("stateDir unusable", {"conf": plugin.conf(stateDir="/proc/c2ct-no-such-dir")}),
    ]
    for name, kw in cases:
        command = kw.pop("command", "ADD")
        kw.setdefault("netns", netns)
        kw.setdefault("cni_args", args)
        extra = kw.pop("env", {})
        inproc = plugin.run(command, pod.id, env={**extra, **via(None)}, **kw)
        through = served(plugin.run(command, pod.id, env={**extra, **via(daemon)}, **kw))
        assert (through.rc, through.stdout) == (inproc.rc, inproc.stdout), name
        assert inproc.rc == 1 and inproc.doc["code"], name
    assert plugin.records() == []


# ---- concurrency ----------------------------------------------------------------------------


def test_concurrent_adds_and_dels(daemon: Daemon, plugin: Plugin, net: Any, resources: Any,
                                  images: Any) -> None:
    pods = [pause_container(resources, images) for _ in range(12)]
    netns = {p.id: proc_netns(p) for p in pods}

    def add(p: Any) -> Outcome:
        return plugin.run("ADD", p.id, netns[p.id], cni_args=cri_args(p.id), env=daemon.env)

    with ThreadPoolExecutor(max_workers=len(pods)) as pool:
        docs = [served(o).ok().doc for o in pool.map(add, pods)]
    assert len({d["ips"][0]["address"] for d in docs}) == len(pods)
    assert {r.docker_id for r in plugin.records()} == {p.id for p in pods}

    def delete(pair: tuple[Any, dict[str, Any]]) -> Outcome:
        p, doc = pair
        return plugin.run("DEL", p.id, netns[p.id], cni_args=cri_args(p.id), prev=doc,
                          env=daemon.env)

    with ThreadPoolExecutor(max_workers=len(pods)) as pool:
        for out in pool.map(delete, zip(pods, docs, strict=True)):
            served(out).silent()
    assert plugin.records() == []
    net.reload()
    assert not net.attrs["Containers"]


# ---- shutdown and failures ------------------------------------------------------------------


def test_sigterm_finishes_the_request_in_flight(daemon: Daemon, plugin: Plugin,
                                                resources: Any, images: Any) -> None:
    """An ADD waits in the daemon for its container's lock (held here); SIGTERM removes the
    socket at once, new invocations run in-process, and the ADD still completes."""
    pod, other = pause_container(resources, images), pause_container(resources, images)
    with Store(plugin.state_dir) as store, store.lock(pod.id):
        proc = plugin.start("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                            env=daemon.env)
        wait_holding(daemon.proc.pid, plugin.lock_path(pod.id))
        daemon.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while daemon.path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not daemon.path.exists(), "the socket must be removed at once"
        assert daemon.proc.poll() is None, "the daemon must wait for the request in flight"
        meanwhile = plugin.run("ADD", other.id, proc_netns(other), cni_args=cri_args(other.id),
                               env={**daemon.env, "CNI2CNM_LOG_LEVEL": "info"}).ok()
        assert "no daemon socket" in meanwhile.stderr
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert "in-process" not in err
    assert daemon.proc.wait(30) == 0
    assert {r.docker_id for r in plugin.records()} == {pod.id, other.id}
    wait_for_log(daemon, "stopping (SIGTERM): socket removed, 1 request(s) in flight")


def test_killed_daemon_leaves_a_socket_pods_still_start(daemon: Daemon, plugin: Plugin,
                                                        resources: Any, images: Any) -> None:
    daemon.proc.kill()
    daemon.proc.wait(10)
    assert daemon.path.exists()
    pod = pause_container(resources, images)
    t0 = time.monotonic()
    out = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                     env=daemon.env).ok()
    assert time.monotonic() - t0 < 30
    assert "does not accept connections (connection refused): running in-process" in out.stderr
    plugin.run("DEL", pod.id, proc_netns(pod), cni_args=cri_args(pod.id), prev=out.doc,
               env=daemon.env).silent()
    # A new daemon replaces the stale socket.
    again = start_daemon(daemon.path.parent)
    try:
        served(plugin.run("STATUS", "", "", conf=plugin.conf(cniVersion="1.1.0"),
                          env=again.env)).silent()
    finally:
        assert again.stop() == 0


def test_daemon_killed_with_the_request_in_flight(daemon: Daemon, plugin: Plugin,
                                                  resources: Any, images: Any) -> None:
    """The daemon took the ADD and died: the executable runs it again in-process."""
    pod = pause_container(resources, images)
    add_while_the_daemon_dies(plugin, pod, daemon.env, daemon.proc.pid)
    daemon.proc.wait(10)


def test_stopped_daemon_is_bypassed(daemon: Daemon, plugin: Plugin, resources: Any,
                                    images: Any) -> None:
    """A daemon that accepts nothing (SIGSTOP): the executable gives up after the hello
    timeout, runs in-process, and the daemon, once continued, does not run it again."""
    pod = pause_container(resources, images)
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        out = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                         env=daemon.env).ok()
        took = time.monotonic() - t0
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    assert "did not answer within 2 s" in out.stderr
    assert took < 30
    served(plugin.run("CHECK", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                      prev=out.doc, env=daemon.env)).silent()
    wait_for_log(daemon, "ended before a request")
    assert len(plugin.records()) == 1


def test_other_users_are_refused(daemon: Daemon, plugin: Plugin, resources: Any,
                                 images: Any) -> None:
    pod = pause_container(resources, images)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    def as_nobody() -> subprocess.CompletedProcess[str]:
        import json

        env = {"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": plugin.docker_host,
               "CNI_COMMAND": "ADD", "CNI_CONTAINERID": pod.id, "CNI_NETNS": proc_netns(pod),
               "CNI_IFNAME": "eth0", "CNI_ARGS": cri_args(pod.id), **daemon.env}
        return subprocess.run([*nobody, plugin_executable()], input=json.dumps(plugin.conf()),
                              env=env, capture_output=True, text=True, timeout=60, check=False)

    # As installed (socket 0600 in a 0700 directory) nobody else can even connect: the
    # executable runs in-process, which fails without root.
    denied = as_nobody()
    assert denied.returncode == 1 and "permission denied" in denied.stderr.lower()
    # Opened up by hand, the daemon itself refuses by the peer's uid.
    os.chmod(daemon.path.parent, 0o755)
    os.chmod(daemon.path, 0o666)
    refused = as_nobody()
    assert refused.returncode == 1, refused
    err = Outcome("ADD", refused.returncode, refused.stdout, refused.stderr).error(5)
    assert err["msg"] == "permission denied" and "uid 65534" in err["details"]
    assert "in-process" not in refused.stderr
    wait_for_log(daemon, "uid 65534 is not root")
    assert plugin.records() == []
    pod.reload()
    assert list(pod.attrs["NetworkSettings"]["Networks"]) == ["none"]


def serve_refused(socket_path: Path) -> str:
    """`cni2cnm serve` on `socket_path` must exit non-zero; what it said."""
    proc = subprocess.run([sys.executable, "-m", "cni2cnm.daemon", "--socket", str(socket_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and not socket_path.exists(), proc
    return proc.stderr


def test_the_socket_directory_is_made_safely(resources: Any) -> None:
    root = resources.tmpdir()
    real = root / "real"
    real.mkdir(mode=0o700)
    (root / "link").symlink_to(real)
    said = serve_refused(root / "link" / "cni2cnm.sock")
    assert f"{root / 'link'} is a symbolic link" in said and list(real.iterdir()) == []
    (root / "open").mkdir(mode=0o700)
    (root / "open").chmod(0o777)
    assert f"{root / 'open'} is writable by group or others" in serve_refused(
        root / "open" / "run" / "cni2cnm.sock")
    # missing parents: 0755, the directory itself 0700, whatever the umask
    old = os.umask(0)
    try:
        with running_daemon_at(root / "a" / "b" / "cni2cnm.sock"):
            pass
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (root / "a", root / "a" / "b")] == [
        0o755, 0o700]


@contextlib.contextmanager
def running_daemon_at(path: Path) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-m", "cni2cnm.daemon", "--socket", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(60)
