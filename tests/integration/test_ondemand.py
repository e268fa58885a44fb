"""Fast by default (issue 13) on a real engine: the plugin starts its daemon on demand, two
plugins racing start one, a daemon killed mid-request costs no pod, a daemon of another
version is replaced, `install --uninstall` stops it, systemd's socket activation hands the
daemon its socket, and the metrics count what happened.

Every test uses a socket in its own directory, and its teardown kills (by pid) every process
whose command line names that directory: no daemon outlives a test."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from c2ctest import pause_container
from daemonrun import MODE_ENV, SOCKET_ENV, add_while_the_daemon_dies, running_daemon
from machine import alive, kill_all_mentioning, killed_at_the_end, processes_mentioning
from pluginrun import (
    Outcome,
    Plugin,
    cri_args,
    plugin_executable,
    proc_netns,
    served,
)

from cni2cnm import __version__
from cni2cnm.daemon import starter, status, wire

pytestmark = pytest.mark.own_modes  # chooses its own modes: the daemon-mode pass skips it


class OnDemand:
    """A socket directory of a test's own; the plugin in mode auto on it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.sock = directory / "run" / "d.sock"

    @property
    def env(self) -> dict[str, str]:
        return {SOCKET_ENV: str(self.sock), MODE_ENV: "auto", "CNI2CNM_LOG_LEVEL": "info"}

    def daemons(self) -> list[int]:
        return [p for p in processes_mentioning(str(self.sock)) if alive(p)]

    def wait_serving(self, timeout: float = 60) -> status.DaemonStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = status.probe(str(self.sock))
            if st.running and st.current:
                return st
            time.sleep(0.05)
        log = self.sock.parent / "serve.log"
        raise AssertionError(f"no daemon came up on {self.sock}: "
                             f"{log.read_text() if log.exists() else 'no log'}")


@pytest.fixture
def ondemand() -> Iterator[OnDemand]:
    d = Path(tempfile.mkdtemp(prefix="c2co-"))  # short: socket paths are limited
    try:
        yield OnDemand(d)
    finally:
        kill_all_mentioning(str(d))
        assert not processes_mentioning(str(d)), "a daemon outlived its test"
        shutil.rmtree(d, ignore_errors=True)
        remove_daemon_cgroups()


def remove_daemon_cgroups() -> None:
    """The cgroups the daemons the test started moved into, once empty (one in use by
    another daemon stays)."""
    for top, _ in starter.cgroup_hierarchies():
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(top, starter.CGROUP))


def status_request(plugin: Plugin, env: dict[str, str]) -> Outcome:
    return plugin.run("STATUS", "", "", conf=plugin.conf(cniVersion="1.1.0"), env=env)


def test_first_request_starts_the_daemon_later_ones_use_it(ondemand: OnDemand, plugin: Plugin,
                                                           resources: Any,
                                                           images: Any) -> None:
    pod = pause_container(resources, images)
    args = cri_args(pod.id)
    assert not ondemand.sock.parent.exists()
    add = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=args, env=ondemand.env).ok()
    # answered in-process, without waiting for the daemon it started
    assert "no daemon socket" in add.stderr and "started a daemon" in add.stderr, add.stderr
    run_dir = ondemand.sock.parent
    assert run_dir.stat().st_mode & 0o777 == 0o700
    st = ondemand.wait_serving()
    assert st.started == wire.ON_DEMAND and st.version == __version__
    assert ondemand.sock.stat().st_mode & 0o777 == 0o600
    served(plugin.run("CHECK", pod.id, proc_netns(pod), cni_args=args, prev=add.doc,
                      env=ondemand.env)).silent()
    served(plugin.run("DEL", pod.id, proc_netns(pod), cni_args=args, prev=add.doc,
                      env=ondemand.env)).silent()
    assert plugin.records() == []
    assert ondemand.daemons() == [st.pid]
    # detached: another session (of which it is not the leader: it can never get a
    # terminal), /dev/null on 0-2
    assert os.getsid(st.pid) not in (os.getsid(0), st.pid)
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{st.pid}/fd/{fd}") == "/dev/null"
    assert (run_dir / "fallbacks").read_text() == "absent\n"
    # started at a lower CPU priority, back at the plugin's once serving
    assert os.getpriority(os.PRIO_PROCESS, st.pid) == os.getpriority(os.PRIO_PROCESS, 0)


def test_two_plugins_racing_start_one_daemon(ondemand: OnDemand, plugin: Plugin) -> None:
    n = 6
    with ThreadPoolExecutor(n) as pool:
        outs = list(pool.map(lambda _: status_request(plugin, ondemand.env), range(n)))
    for o in outs:
        o.silent()
    assert sum("started a daemon" in o.stderr for o in outs) == 1, [o.stderr for o in outs]
    st = ondemand.wait_serving()
    served(status_request(plugin, ondemand.env)).silent()
    time.sleep(0.5)  # a second daemon would have had the time to come up
    assert ondemand.daemons() == [st.pid]


def test_daemon_killed_mid_request(ondemand: OnDemand, plugin: Plugin, resources: Any,
                                   images: Any) -> None:
    status_request(plugin, ondemand.env).silent()  # starts it
    st = ondemand.wait_serving()
    pod = pause_container(resources, images)
    add_while_the_daemon_dies(plugin, pod, ondemand.env, st.pid)
    # the stale socket: the next request runs in-process and starts a new daemon
    again = status_request(plugin, ondemand.env).silent()
    assert "connection refused" in again.stderr and "started a daemon" in again.stderr
    assert ondemand.wait_serving().pid != st.pid
    served(plugin.run("DEL", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                      env=ondemand.env)).silent()


OLD_DAEMON = textwrap.dedent("""
    import os, socket, sys
    from cni2cnm.daemon import wire
    path = sys.argv[1]
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = s.accept()
        wire.send(conn, wire.hello("0.0.1", os.getpid(), wire.build_id(), "on-demand"))
        conn.close()
""")


@contextlib.contextmanager
def old_daemon(ondemand: OnDemand, started: str) -> Iterator[subprocess.Popen[str]]:
    """A daemon of cni2cnm 0.0.1 (started `started`) on the test's socket, killed at the end
    if it still runs."""
    ondemand.sock.parent.mkdir(mode=0o700)
    script = OLD_DAEMON.replace('"on-demand"', f'"{started}"')
    old = subprocess.Popen([sys.executable, "-c", script, str(ondemand.sock)],
                           stdout=subprocess.PIPE, text=True)
    with killed_at_the_end(old):
        assert old.stdout is not None and old.stdout.readline() == "ready\n"
        yield old


def test_a_daemon_of_another_version_is_replaced(ondemand: OnDemand, plugin: Plugin) -> None:
    with old_daemon(ondemand, wire.ON_DEMAND) as old:
        out = status_request(plugin, ondemand.env).silent()
        assert "runs cni2cnm 0.0.1" in out.stderr and f"stopped it (pid {old.pid})" in out.stderr
        assert old.wait(10) == -15  # SIGTERM
        st = ondemand.wait_serving()
        assert st.current and st.started == wire.ON_DEMAND
        served(status_request(plugin, ondemand.env)).silent()


def test_a_manual_daemon_of_another_version_is_only_bypassed(ondemand: OnDemand,
                                                             plugin: Plugin) -> None:
    with old_daemon(ondemand, "manual") as old:
        out = status_request(plugin, ondemand.env).silent()
        assert "restart the daemon" in out.stderr and old.poll() is None


def test_install_uninstall_stops_the_daemon_the_plugin_started(ondemand: OnDemand,
                                                               plugin: Plugin,
                                                               resources: Any) -> None:
    root = resources.tmpdir()
    cli = [plugin_executable(), "install", "--bin-dir", str(root / "bin"), "--conf-dir",
           str(root / "net.d"), "--state-dir", str(root / "state"), "--systemd", "no",
           "--daemon-socket", str(ondemand.sock)]
    subprocess.run(cli, check=True, capture_output=True, timeout=60)
    installed = root / "bin" / "cni2cnm"
    conf = json.dumps(plugin.conf(cniVersion="1.1.0")).encode()
    env = {"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": plugin.docker_host,
           "CNI_COMMAND": "STATUS", "CNI_PATH": str(root / "bin"), **ondemand.env}
    first = subprocess.run([str(installed)], input=conf, env=env, capture_output=True,
                           timeout=60)
    assert first.returncode == 0 and b"started a daemon" in first.stderr, first.stderr
    st = ondemand.wait_serving()
    # re-running install (same version) keeps it; --uninstall stops it
    again = subprocess.run([*cli, "-o", "json"], check=True, capture_output=True, text=True,
                           timeout=60)
    assert "stopped" not in {a["action"] for a in json.loads(again.stdout)} and alive(st.pid)
    gone = subprocess.run([*cli, "--uninstall", "-o", "json"], capture_output=True, text=True,
                          timeout=60)
    actions = {a["path"]: a for a in json.loads(gone.stdout)}
    assert actions[str(ondemand.sock)]["action"] == "stopped", gone.stdout
    assert f"pid {st.pid}" in actions[str(ondemand.sock)]["note"]
    assert not alive(st.pid) and not ondemand.sock.exists()
    assert not installed.exists()


def test_socket_activation_with_systemd_socket_activate(ondemand: OnDemand,
                                                        plugin: Plugin) -> None:
    tool = shutil.which("systemd-socket-activate")
    assert tool, "systemd-socket-activate is missing: run scripts/bootstrap.sh"
    ondemand.sock.parent.mkdir(mode=0o700)
    from cni2cnm.daemon.starter import daemon_argv

    code = daemon_argv(str(ondemand.sock), 3, str(ondemand.dir))[3]  # what the plugin runs
    log = ondemand.dir / "activated.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            ["sh", "-c", 'umask 077; exec "$@"', "sh", tool, "-l", str(ondemand.sock),
             sys.executable, "-I", "-c", code, "--socket", str(ondemand.sock)],
            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    with killed_at_the_end(proc):
        deadline = time.monotonic() + 30
        while not ondemand.sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.05)
        # systemd-socket-activate makes it 0644 (systemd: SocketMode=0600): either way only
        # root can connect (write permission), in a 0700 directory
        assert ondemand.sock.stat().st_mode & 0o022 == 0
        # the first connection makes systemd-socket-activate exec the daemon with the socket
        first = status_request(plugin, {**ondemand.env, MODE_ENV: "manual"})
        first.silent()
        st = ondemand.wait_serving()
        assert st.started == wire.SYSTEMD and st.pid == proc.pid
        served(status_request(plugin, {**ondemand.env, MODE_ENV: "manual"})).silent()
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
        assert "systemd" in log.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_count_requests_and_fallbacks(plugin: Plugin, resources: Any,
                                              images: Any) -> None:
    port = free_port()
    with running_daemon("--metrics-address", f"127.0.0.1:{port}") as d:
        pod = pause_container(resources, images)
        args = cri_args(pod.id)
        add = served(plugin.run("ADD", pod.id, proc_netns(pod), cni_args=args, env=d.env)).ok()
        served(plugin.run("DEL", pod.id, proc_netns(pod), cni_args=args, prev=add.doc,
                          env=d.env)).silent()
        bad = served(plugin.run("ADD", pod.id, "/nonexistent/ns", cni_args=args, env=d.env))
        code = bad.error(bad.doc["code"])["code"]
        # an executable that could not use the daemon counts itself
        with open(d.path.parent / "fallbacks", "a") as f:
            f.write("no_reply\n")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status == 200
        st = status.probe(str(d.path))
        assert st.metrics == f"127.0.0.1:{port}"
    text = body.decode()
    assert 'cni2cnm_requests_total{code="0",command="ADD"} 1.0' in text
    assert 'cni2cnm_requests_total{code="0",command="DEL"} 1.0' in text
    assert f'cni2cnm_requests_total{{code="{code}",command="ADD"}} 1.0' in text
    assert 'cni2cnm_request_duration_seconds_count{command="ADD"} 2.0' in text
    assert 'cni2cnm_in_process_fallbacks_total{kind="no_reply"} 1.0' in text
    assert 'cni2cnm_engine_calls_total{method="connect"}' in text
    assert "cni2cnm_requests_in_flight 0.0" in text


def test_a_daemon_started_by_hand_takes_over_from_an_on_demand_one(ondemand: OnDemand,
                                                                   plugin: Plugin) -> None:
    """A DaemonSet's or an operator's `cni2cnm serve` on the socket the plugin started a
    daemon on: the on-demand daemon is stopped, the manual one serves."""
    status_request(plugin, ondemand.env).silent()
    first = ondemand.wait_serving()
    log = ondemand.dir / "manual.log"
    with open(log, "wb") as f:
        manual = subprocess.Popen([sys.executable, "-m", "cni2cnm.daemon", "--socket",
                                   str(ondemand.sock)], stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    with killed_at_the_end(manual):
        deadline = time.monotonic() + 60
        while (st := status.probe(str(ondemand.sock))).started != wire.MANUAL:
            assert time.monotonic() < deadline and manual.poll() is None, log.read_text()
            time.sleep(0.05)
        assert st.pid == manual.pid
        while alive(first.pid):  # it removed its socket at once; it exits right after
            assert time.monotonic() < deadline, "the on-demand daemon did not exit"
            time.sleep(0.05)
        assert "taking over" in log.read_text()
        served(status_request(plugin, ondemand.env)).silent()
        manual.terminate()
        assert manual.wait(30) == 0


def cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def test_the_daemon_owns_nothing_of_the_request_that_started_it(ondemand: OnDemand,
                                                                plugin: Plugin) -> None:
    """Issue 19, item 5: started by a plugin with umask 000, an odd working directory and a
    cgroup of the test's own (pids: the one that kills or limits a runtime), the daemon runs
    in /, with umask 022, 0600 files, and out of that cgroup (in its own, `cni2cnm`, at the
    top of each hierarchy): the caller's cgroup can be removed while the daemon serves."""
    pids_top = next((top for top, options in starter.cgroup_hierarchies()
                     if "pids" in options), None)
    assert pids_top is not None, "no pids cgroup hierarchy on this machine"
    caller_cg = Path(pids_top, f"c2ct-{os.getpid()}-{time.monotonic_ns()}")
    caller_cg.mkdir()
    odd = ondemand.dir / "odd cwd"
    odd.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": plugin.docker_host,
           "CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin", **ondemand.env}
    script = 'echo $$ > "$1/cgroup.procs" && umask 000 && cd "$2" && exec "$3"'
    try:
        first = subprocess.run(["sh", "-c", script, "sh", str(caller_cg), str(odd),
                                plugin_executable()],
                               input=json.dumps(plugin.conf(cniVersion="1.1.0")).encode(),
                               env=env, capture_output=True, timeout=120)
        assert first.returncode == 0 and b"started a daemon" in first.stderr, first.stderr
        st = ondemand.wait_serving()
        assert os.readlink(f"/proc/{st.pid}/cwd") == "/"
        status_lines = Path(f"/proc/{st.pid}/status").read_text().splitlines()
        assert "Umask:\t0022" in status_lines
        log = ondemand.sock.parent / "serve.log"
        assert log.stat().st_mode & 0o777 == 0o600 and "cgroups: " in log.read_text()
        assert cgroup_of(st.pid, "pids") == f"/{starter.CGROUP}"
        assert (caller_cg / "cgroup.procs").read_text() == ""
        caller_cg.rmdir()  # what a runtime's restart does to its cgroup: the daemon stays
        served(status_request(plugin, ondemand.env)).silent()
        assert alive(st.pid)
    finally:
        kill_all_mentioning(str(ondemand.dir))
        with contextlib.suppress(OSError):
            caller_cg.rmdir()
