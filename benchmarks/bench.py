#!/usr/bin/env python3
"""cni2cnm's benchmark: what a pod's network costs, against the Docker engine's own floor.

    sudo .venv/bin/python benchmarks/bench.py [--cycles 30] [--json out.json]

Uses the engine at DOCKER_HOST when it answers, else starts a throwaway one with
scripts/dockerd.sh (and scripts/images.sh for the pause image); creates a bridge network with
an explicit 10.255.N.0/24 subnet; removes every container, network, directory and engine it
made at the end, also after a failure or Ctrl-C.

In each cycle, in an order that rotates from cycle to cycle so machine noise hits all alike,
one ADD and one DEL of a fresh none-mode pause container (created and removed outside the
timed region; Docker names interfaces eth0, eth1, ... and never reuses a number) by:

  (a) floor     the Docker SDK in this warm process: the engine work itself, detach `none` +
                connect + inspect ("ADD"; connect + inspect alone is reported too) and
                disconnect ("DEL")
  (b) in-proc   the cni2cnm executable as a runtime runs it (new process, env + stdin),
                no daemon
  (c) daemon    the same executable, forwarding to `cni2cnm serve`
  (d) CLI       the 2016 approach (kubernetes/contrib `to_docker`): the docker CLI doing
                `network disconnect none`, `network connect`, `inspect`, then
                `network disconnect`
  (e) default   the same executable on a node that ran only `cni2cnm install`: no daemon
                started by hand, the config's `daemon` key at its default (auto), so the
                plugin starts its daemon on demand (on a socket of the benchmark's own:
                the machine's default socket may be someone else's); steady state
  (f) shim      the static shim (scripts/shim.sh) as `cni2cnm install --shim` places it,
                the Python plugin file beside it, forwarding to the `cni2cnm serve` of (c)
  (g) shim dflt the same shim on the socket of (e): the daemon the Python plugin beside it
                started on demand; steady state

and, before the cycles, the first request after install: rounds of an in-process ADD (b)
and, with no daemon running, an ADD of (e), which runs in-process and starts the daemon.

plus VERSION through the executable. Then 50 pods ADDed with 50 in flight and DELed, for (a),
(c), (b) and (f), five rounds in rotating order (the median round counts); then GC of 1,000 stale
records (containers that do not exist) in one run of the
executable, in-process and through the daemon; then where the time goes (imports on the
start-up path, cProfile of an in-process ADD, the daemon's share of a forwarded ADD).
Prints a table and the targets, and writes everything (raw samples too) as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
DEV_EXE = str(Path(sys.executable).parent / "cni2cnm")
PAUSE = "local/pause:3.10"
LABEL = "c2c.bench"
SESSION = secrets.token_hex(4)
MODES = ("a", "b", "c", "d", "e", "f", "g")
DAEMON_MODES = ("c", "f")  # through the `cni2cnm serve` started here
AUTO_MODES = ("e", "g")  # through the daemon started on demand
SHIM_MODES = ("f", "g")
# Runs a command as a child of a minimal process, for its peak RSS: ru_maxrss counts the
# memory of the process a child was forked from, so children of this big benchmark process
# would all report its size. The floor of this method (/bin/true) is reported with it.
RSS_SPAWNER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\\nC2CB_MAXRSS_KB=%d\\n" % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""
MODE_NAMES = {"a": "(a) SDK floor", "b": "(b) in-process", "c": "(c) daemon",
              "d": "(d) docker CLI", "e": "(e) default install", "f": "(f) shim+daemon",
              "g": "(g) shim default"}

# Targets of issues 8 and 13 (ms, ratios, MB).
TARGETS = {
    "c_add_over_floor_ms": 30, "c_del_over_floor_ms": 30, "c_cycle_vs_floor": 1.15,
    "c_cycle_vs_cli": 1.1, "b_op_over_floor_ms": 150, "version_ms": 60,
    "concurrent_throughput_vs_floor": 0.9, "rss_client_mb": 20, "rss_inprocess_mb": 60,
    "e_cycle_vs_floor": 1.25, "first_over_inprocess_ms": 100,
    "f_cycle_vs_floor": 1.15, "g_cycle_vs_floor": 1.15,  # issue 23
}


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ==== statistics ================================================================================


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def p95(xs: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def summary(xs: list[float]) -> dict[str, float]:
    return {"median": median(xs), "p95": p95(xs), "min": min(xs) if xs else math.nan,
            "max": max(xs) if xs else math.nan, "n": len(xs)}


# ==== processes =================================================================================


@dataclass
class Run:
    rc: int
    ms: float
    stdout: str
    stderr: str
    maxrss_kb: int
    cpu_ms: float = 0.0


def run_process(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> Run:
    """Run a process with files for stdin/stdout/stderr; wall time and peak RSS (wait4)."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
            tempfile.TemporaryFile() as ferr:
        fin.write(stdin)
        fin.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, env=env,
                                close_fds=True)
        _, status, usage = os.wait4(proc.pid, 0)
        ms = (time.perf_counter() - t0) * 1e3
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        return Run(proc.returncode, ms, fout.read().decode(errors="replace"),
                   ferr.read().decode(errors="replace"), usage.ru_maxrss,
                   (usage.ru_utime + usage.ru_stime) * 1e3)


def process_cpu_ms(pid: int) -> float:
    """utime + stime of a process and of its children it waited for (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks * 1e3 / os.sysconf("SC_CLK_TCK")


def dockerd_pid(host: str) -> int | None:
    """The dockerd serving a unix:// host, found by its -H argument."""
    if not host.startswith("unix://"):
        return None
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dockerd") and host.encode() in argv:
            return int(d.name)
    return None


# ==== the engine ================================================================================


class Bench:
    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.stack = stack
        self.tmp = Path(tempfile.mkdtemp(prefix="c2cb-"))
        stack.callback(shutil.rmtree, self.tmp, True)
        self.py, self.exe = self._executable(args.executable)
        self.shim = self._shim()
        self.host = self._engine()
        import docker

        self.docker = docker
        self.api = docker.APIClient(base_url=self.host, version="auto", timeout=120)
        stack.callback(self._sweep)
        self.net_name, self.net_id, self.subnet = self._network()
        self.state = str(self.tmp / "state")
        self.daemon_log = self.tmp / "serve.log"
        self.sock = str(self.tmp / "run" / "cni2cnm.sock")
        self.auto_sock = str(self.tmp / "auto" / "cni2cnm.sock")  # (e): started on demand
        stack.callback(self.stop_on_demand)
        self.daemon = self._start_daemon()
        self.results: dict[str, Any] = {}

    # ---- the executable ---------------------------------------------------------------------

    def _executable(self, which: str) -> tuple[str, str]:
        """(python, cni2cnm executable). "installed": a copy of the package installed the way
        `pip install .` does (a venv, the package in site-packages), with the dependencies of
        this venv, run through the plugin file `cni2cnm install` writes; "dev": this venv's
        console script and editable install, whose import hook costs every process ~11 ms
        that an installed node does not pay."""
        if which == "dev":
            return sys.executable, DEV_EXE
        if which != "installed":
            return sys.executable, which
        venv = self.tmp / "venv"
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
        py = str(venv / "bin" / "python")
        purelib = Path(subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip())
        shutil.copytree(REPO / "cni2cnm", purelib / "cni2cnm",
                        ignore=shutil.ignore_patterns("__pycache__"))
        import sysconfig

        (purelib / "cni2cnm-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run([py, "-m", "compileall", "-q", str(purelib / "cni2cnm")], check=True)
        # The file `cni2cnm install` places in the CNI bin dir, as a node runs the plugin.
        exe = venv / "cni-bin" / "cni2cnm"
        exe.parent.mkdir()
        exe.write_text(subprocess.run(
            [py, "-c", "import sys; from cni2cnm.ops.install import wrapper_text; "
             "sys.stdout.write(wrapper_text())"],
            capture_output=True, text=True, check=True).stdout)
        exe.chmod(0o755)
        log(f"installed a copy of cni2cnm in {venv}, plugin file {exe}")
        return py, str(exe)

    def _shim(self) -> str:
        """The static shim, built by scripts/shim.sh, in a bin dir as `cni2cnm install
        --shim` makes it: the shim as cni2cnm, the Python plugin file beside it."""
        bin_dir = self.tmp / "shim-bin"
        bin_dir.mkdir(mode=0o755)
        shim = bin_dir / "cni2cnm"
        subprocess.run(["bash", str(SCRIPTS / "shim.sh"), str(shim)], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.copy(self.exe, bin_dir / "cni2cnm-python")
        os.chmod(bin_dir / "cni2cnm-python", 0o755)
        log(f"built the shim {shim}")
        return str(shim)

    # ---- engine, images, network ----------------------------------------------------------

    def _engine(self) -> str:
        host = os.environ.get("DOCKER_HOST", "")
        if host and subprocess.run(["docker", "-H", host, "info"], capture_output=True,
                                   timeout=20, check=False).returncode == 0:
            log(f"using the engine at {host}")
        else:
            d = tempfile.mkdtemp(prefix="c2cbe-")
            self.stack.callback(shutil.rmtree, d, True)
            self.stack.callback(subprocess.run, ["bash", str(SCRIPTS / "dockerd.sh"), "stop", d],
                                check=False)
            host = subprocess.run(["bash", str(SCRIPTS / "dockerd.sh"), "start", d],
                                  capture_output=True, text=True, check=True).stdout.strip()
            log(f"started a throwaway engine (C2C_ENGINE={os.environ.get('C2C_ENGINE', '20.10')})"
                f" at {host}")
        subprocess.run(["bash", str(SCRIPTS / "images.sh"), host], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return host

    def _network(self) -> tuple[str, str, str]:
        docker = self.docker
        name = f"c2cb-{SESSION}"
        start = secrets.randbelow(200)
        for i in range(256):
            subnet = f"10.255.{(start + i) % 256}.0/24"
            try:
                net = self.api.create_network(
                    name, driver="bridge", labels={LABEL: SESSION}, check_duplicate=True,
                    ipam=docker.types.IPAMConfig(
                        pool_configs=[docker.types.IPAMPool(subnet=subnet)]))
                log(f"network {name} {subnet}")
                return name, net["Id"], subnet
            except docker.errors.APIError as e:
                if "overlap" not in str(e).lower():
                    raise
        raise RuntimeError("no free 10.255.N.0/24 subnet")

    def _sweep(self) -> None:
        """Remove every container and network of this session. An engine that stops
        answering (dockerd 20.10 can deadlock in libnetwork under 50 concurrent connects and
        disconnects, the SDK floor's included) ends the sweep at its first timeout instead of
        one timeout per container; an engine the bench started is stopped after this."""
        flt = {"label": f"{LABEL}={SESSION}"}
        refused = self.docker.errors.APIError  # one container or network: go on
        try:
            for c in self.api.containers(all=True, filters=flt):
                with contextlib.suppress(refused):
                    self.api.remove_container(c["Id"], force=True)
            for n in self.api.networks(filters=flt):
                with contextlib.suppress(refused):
                    self.api.remove_network(n["Id"])
        except Exception as e:  # a timeout, a connection refused: the engine is not answering
            log(f"cleanup stopped: the engine at {self.host} did not answer ({e})")
        self.api.close()

    def pod(self) -> tuple[str, int]:
        """A running pause container in network mode none, as cri-dockerd makes them."""
        c = self.api.create_container(
            PAUSE, name=f"c2cb-{SESSION}-{secrets.token_hex(4)}", labels={LABEL: SESSION},
            host_config=self.api.create_host_config(network_mode="none"))
        self.api.start(c["Id"])
        return c["Id"], int(self.api.inspect_container(c["Id"])["State"]["Pid"])

    def remove(self, cid: str) -> None:
        self.api.remove_container(cid, force=True)

    # ---- the daemon -----------------------------------------------------------------------

    def _start_daemon(self) -> subprocess.Popen[bytes]:
        f = open(self.daemon_log, "wb")  # noqa: SIM115 - open while the daemon runs
        self.stack.callback(f.close)
        proc = subprocess.Popen([self.py, *shlex.split(self.args.serve), "--socket", self.sock,
                                 "--log-level", "debug"], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self._base_env())
        self.stack.callback(self._stop_daemon, proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.daemon_log.read_text()}")
            with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
                s.connect(self.sock)
                log(f"daemon pid {proc.pid} on {self.sock}")
                return proc
            time.sleep(0.05)
        raise RuntimeError("serve did not come up")

    def _stop_daemon(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def on_demand_pids(self) -> list[int]:
        """The daemons the plugin started on demand for (e): found by their socket path."""
        pids = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and self.auto_sock.encode() in \
                        (entry / "cmdline").read_bytes():
                    stat = (entry / "stat").read_text()
                    if stat.rpartition(")")[2].split()[0] != "Z":
                        pids.append(int(entry.name))
        return pids

    def stop_on_demand(self) -> None:
        pids = self.on_demand_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self.on_demand_pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in self.on_demand_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def wait_on_demand(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_UNIX) as s, contextlib.suppress(OSError):
                s.settimeout(2)
                s.connect(self.auto_sock)
                if s.recv(4):  # greeted: serving
                    return
            time.sleep(0.02)
        raise RuntimeError("the on-demand daemon did not come up")

    def daemon_memory(self) -> dict[str, float]:
        out = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.daemon.pid}/status").read_text().splitlines():
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024
        return out

    def daemon_ms(self, command: str, container_id: str) -> float | None:
        """The daemon's own time for a request, from its debug log."""
        pat = re.compile(rf"DEBUG {command} {re.escape(container_id)} from pid \d+: exit \d+ "
                         r"in ([0-9.]+) ms")
        found = pat.findall(self.daemon_log.read_text(errors="replace"))
        return float(found[-1]) if found else None

    # ---- one ADD and DEL per mode -----------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "HOME": os.environ.get("HOME", "/root")}

    def conf(self, **extra: Any) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": self.net_name, "type": "cni2cnm",
                "stateDir": self.state, **extra}

    def plugin_env(self, command: str, cid: str, pid: int, daemon: bool | str
                   ) -> dict[str, str]:
        """daemon: False (b: no daemon), True (c: `cni2cnm serve`, never one started on
        demand), "auto" (e: as `cni2cnm install` leaves a node: the daemon key unset)."""
        if daemon == "auto":
            mode = {"CNI2CNM_DAEMON_SOCKET": self.auto_sock}
        else:
            mode = {"CNI2CNM_DAEMON_SOCKET": self.sock if daemon else "",
                    "CNI2CNM_DAEMON": "manual" if daemon else "off"}
        return {**self._base_env(), "DOCKER_HOST": self.host, "CNI_COMMAND": command,
                "CNI_CONTAINERID": cid, "CNI_NETNS": f"/proc/{pid}/ns/net" if pid else "",
                "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={cid[:12]};"
                            f"K8S_POD_INFRA_CONTAINER_ID={cid}",
                **mode}

    def plugin(self, command: str, cid: str, pid: int, daemon: bool | str,
               conf: dict[str, Any] | None = None, shim: bool = False) -> Run:
        r = run_process([self.shim if shim else self.exe],
                        self.plugin_env(command, cid, pid, daemon),
                        json.dumps(conf or self.conf()).encode())
        if r.rc != 0 or (daemon is True and "in-process" in r.stderr):
            raise RuntimeError(f"{command} ({'daemon' if daemon else 'in-process'}) failed: "
                               f"rc={r.rc} {r.stdout} {r.stderr}")
        return r

    def floor_add(self, cid: str) -> float:
        """The engine work an ADD of a `none`-mode container needs: detach `none` (Docker
        refuses to connect a container that is on it), connect, inspect. Returns the ms of
        the detach."""
        t0 = time.perf_counter()
        self.api.disconnect_container_from_network(cid, "none")
        t1 = time.perf_counter()
        self.api.connect_container_to_network(cid, self.net_id)
        self.api.inspect_container(cid)
        return (t1 - t0) * 1e3

    def mode_a(self, cid: str, pid: int) -> dict[str, float]:
        t0 = time.perf_counter()
        detach_ms = self.floor_add(cid)
        t1 = time.perf_counter()
        self.api.disconnect_container_from_network(cid, self.net_id)
        t2 = time.perf_counter()
        add = (t1 - t0) * 1e3
        return {"add": add, "del": (t2 - t1) * 1e3, "add_connect_inspect": add - detach_ms}

    def mode_plugin(self, cid: str, pid: int, daemon: bool | str,
                    shim: bool = False) -> dict[str, float]:
        add = self.plugin("ADD", cid, pid, daemon, shim=shim)
        prev = json.loads(add.stdout)
        dele = self.plugin("DEL", cid, pid, daemon, self.conf(prevResult=prev), shim=shim)
        out = {"add": add.ms, "del": dele.ms}
        if daemon == "auto":  # a request that ran in-process (a fallback): counted
            out["fallbacks"] = sum("in-process" in r.stderr for r in (add, dele))
        elif daemon:
            for op, r in (("ADD", "add"), ("DEL", "del")):
                ms = self.daemon_ms(op, cid)
                if ms is not None:
                    out[f"{r}_in_daemon"] = ms
        return out

    def docker_cli(self, *args: str) -> Run:
        r = run_process(["docker", "-H", self.host, *args], self._base_env())
        if r.rc != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {r.stderr}")
        return r

    def mode_d(self, cid: str, pid: int) -> dict[str, float]:
        add = sum(self.docker_cli(*a).ms for a in (("network", "disconnect", "none", cid),
                                                   ("network", "connect", self.net_name, cid),
                                                   ("inspect", cid)))
        dele = self.docker_cli("network", "disconnect", self.net_name, cid).ms
        return {"add": add, "del": dele}

    def version(self) -> Run:
        env = {**self._base_env(), "CNI_COMMAND": "VERSION"}
        r = run_process([self.exe], env, b'{"cniVersion": "1.0.0"}')
        if r.rc != 0:
            raise RuntimeError(f"VERSION failed: {r.stdout} {r.stderr}")
        return r

    # ---- phases -------------------------------------------------------------------------------

    def first_requests(self) -> None:
        """The first request after install (or boot): rounds of an in-process ADD (b) and,
        with no daemon running, the ADD of (e) that runs in-process and starts the daemon;
        each round in alternating order. Leaves the daemon of (e) running."""
        k = self.args.first_runs
        log(f"first request after install: {k} rounds of (b) ADD and a first (e) ADD")
        samples: dict[str, list[float]] = {"b_add": [], "e_first_add": []}
        for i in range(k):
            self.stop_on_demand()
            for m in ("b", "e") if i % 2 == 0 else ("e", "b"):
                cid, pid = self.pod()
                try:
                    add = self.plugin("ADD", cid, pid, m == "e" and "auto")
                    samples[f"{m}_first_add" if m == "e" else "b_add"].append(add.ms)
                    self.plugin("DEL", cid, pid, False,
                                self.conf(prevResult=json.loads(add.stdout)))
                finally:
                    self.remove(cid)
            self.wait_on_demand()
        self.results["first"] = {k2: summary(v) for k2, v in samples.items()}
        self.results["first"]["samples"] = samples

    def cycles(self) -> None:
        n = self.args.cycles
        samples: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        versions: list[Run] = []
        run = {"a": self.mode_a, "b": lambda c, p: self.mode_plugin(c, p, False),
               "c": lambda c, p: self.mode_plugin(c, p, True), "d": self.mode_d,
               "e": lambda c, p: self.mode_plugin(c, p, "auto"),
               "f": lambda c, p: self.mode_plugin(c, p, True, shim=True),
               "g": lambda c, p: self.mode_plugin(c, p, "auto", shim=True)}
        log(f"{n} cycles (+1 warm-up) of ADD+DEL by {', '.join(MODES)}, and VERSION")
        for i in range(-1, n):  # cycle -1 warms caches up and is not recorded
            order = MODES[i % len(MODES):] + MODES[:i % len(MODES)]
            for m in order:
                cid, pid = self.pod()
                try:
                    s = run[m](cid, pid)
                finally:
                    self.remove(cid)
                if i >= 0:
                    samples[m].append(s)
            v = self.version()
            if i >= 0:
                versions.append(v)
            if i >= 0 and (i + 1) % 10 == 0:
                log(f"  {i + 1}/{n}")
        res: dict[str, Any] = {}
        for m in MODES:
            xs = samples[m]
            res[m] = {
                "add": summary([s["add"] for s in xs]),
                "del": summary([s["del"] for s in xs]),
                "cycle": summary([s["add"] + s["del"] for s in xs]),
                "samples": xs,
            }
            if m == "a":
                res[m]["add_connect_inspect"] = summary([s["add_connect_inspect"] for s in xs])
            if m in AUTO_MODES:
                res[m]["fallbacks"] = sum(int(s.get("fallbacks", 0)) for s in xs)
            if m in DAEMON_MODES:
                for op in ("add", "del"):
                    inside = [s[f"{op}_in_daemon"] for s in xs if f"{op}_in_daemon" in s]
                    outside = [s[op] - s[f"{op}_in_daemon"] for s in xs
                               if f"{op}_in_daemon" in s]
                    res[m][f"{op}_in_daemon"] = summary(inside)
                    res[m][f"{op}_outside_daemon"] = summary(outside)
        res["version"] = {"ms": summary([v.ms for v in versions])}
        self.results["cycles"] = res

    def concurrency(self) -> None:
        """Each mode `--concurrent-rounds` times, the modes interleaved round by round; the
        median round of each mode is reported (one round alone is noisy on 2 cores)."""
        n, rounds = self.args.concurrent, self.args.concurrent_rounds
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in self.args.concurrent_modes}
        modes = list(self.args.concurrent_modes)
        for r in range(rounds):
            for m in modes[r % len(modes):] + modes[:r % len(modes)]:  # rotated per round
                log(f"{n} concurrent ADDs then DELs by ({m}), round {r + 1}/{rounds}")
                runs[m].append(self._concurrent(m, n))
        res: dict[str, Any] = {}
        for m, rs in runs.items():
            res[m] = {
                "add_wall_ms": median([x["add_wall_ms"] for x in rs]),
                "del_wall_ms": median([x["del_wall_ms"] for x in rs]),
                "errors": sum(x["errors"] for x in rs),
                "error_samples": [e for x in rs for e in x["error_samples"]][:5],
                "cpu_ms_per_op": {op: {k: median([x["cpu_ms_per_op"][op][k] for x in rs])
                                       for k in rs[0]["cpu_ms_per_op"][op]}
                                  for op in ("add", "del")},
                "rounds": rs,
            }
        if "a" in res:
            for m in res:
                for op in ("add", "del"):
                    res[m][f"{op}_throughput_vs_floor"] = (res["a"][f"{op}_wall_ms"]
                                                           / res[m][f"{op}_wall_ms"])
        self.results["concurrency"] = {"n": n, **res}

    def _concurrent(self, m: str, n: int) -> dict[str, Any]:
        import resource

        pods = [self.pod() for _ in range(n)]
        errors: list[str] = []
        prevs: dict[str, Any] = {}
        client_cpu: dict[str, list[float]] = {"add": [], "del": []}

        def add(pod: tuple[str, int]) -> None:
            cid, pid = pod
            if m == "a":
                self.floor_add(cid)
            else:
                r = self.plugin("ADD", cid, pid, m in DAEMON_MODES, shim=m in SHIM_MODES)
                client_cpu["add"].append(r.cpu_ms)
                prevs[cid] = json.loads(r.stdout)

        def delete(pod: tuple[str, int]) -> None:
            cid, pid = pod
            if m == "a":
                self.api.disconnect_container_from_network(cid, self.net_id)
            else:
                r = self.plugin("DEL", cid, pid, m in DAEMON_MODES,
                                self.conf(prevResult=prevs[cid]), shim=m in SHIM_MODES)
                client_cpu["del"].append(r.cpu_ms)

        def this_process_ms() -> float:
            u = resource.getrusage(resource.RUSAGE_SELF)
            return (u.ru_utime + u.ru_stime) * 1e3

        walls, cpu = {}, {}
        engine = dockerd_pid(self.host)
        try:
            for op, fn in (("add", add), ("del", delete)):
                before = (process_cpu_ms(engine) if engine else math.nan,
                          process_cpu_ms(self.daemon.pid), this_process_ms())
                t0 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=n) as pool:
                    for f in [pool.submit(fn, p) for p in pods]:
                        try:
                            f.result()
                        except Exception as e:
                            errors.append(f"{op}: {e}"[:300])
                walls[op] = (time.perf_counter() - t0) * 1e3
                after = (process_cpu_ms(engine) if engine else math.nan,
                         process_cpu_ms(self.daemon.pid), this_process_ms())
                # CPU per operation, in ms: where a 2-core machine spends it.
                cpu[op] = {
                    "dockerd": (after[0] - before[0]) / n,
                    "serve": (after[1] - before[1]) / n if m in DAEMON_MODES else 0.0,
                    "clients": sum(client_cpu[op]) / n,
                    "sdk_in_bench": (after[2] - before[2]) / n if m == "a" else 0.0,
                }
        finally:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda p: self.remove(p[0]), pods))
        return {"add_wall_ms": walls["add"], "del_wall_ms": walls["del"],
                "cpu_ms_per_op": cpu, "errors": len(errors), "error_samples": errors[:5]}

    def gc(self) -> None:
        from cni2cnm.store import ATTACHED, Attachment, Store

        n = self.args.gc_records
        res = {}
        for m in ("b", "c"):
            state = str(self.tmp / f"gc-{m}")
            with Store(state) as store:
                for i in range(n):
                    store.put(Attachment(
                        network=self.net_name, container_id=f"gone-{i:04d}", ifname="eth0",
                        state=ATTACHED, docker_network=self.net_name, network_id=self.net_id,
                        network_name=self.net_name, docker_id=secrets.token_hex(32),
                        docker_name=f"c2cb-gone-{SESSION}-{i}", ips=["10.255.255.1/24"]))
            conf = {**self.conf(stateDir=state), "cniVersion": "1.1.0",
                    "cni.dev/valid-attachments": []}
            log(f"GC of {n} stale records ({m})")
            r = self.plugin("GC", "", 0, m == "c", conf)
            with Store(state) as store:
                left = len(store.list(self.net_name))
            res[m] = {"ms": r.ms, "records": n, "left": left, "rc": r.rc}
        self.results["gc"] = res

    # ---- peak RSS -----------------------------------------------------------------------------

    def rss(self) -> None:
        """Peak RSS of the plugin process, each run a child of a minimal spawner."""
        k = self.args.rss_runs
        log(f"peak RSS: {k} runs each of VERSION and (b), (c) ADD and DEL")

        def measure(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[float, Run]:
            r = run_process([self.py, "-S", "-c", RSS_SPAWNER, *argv], env, stdin)
            m = re.search(r"C2CB_MAXRSS_KB=(\d+)", r.stderr)
            if r.rc != 0 or m is None:
                raise RuntimeError(f"{argv}: rc={r.rc} {r.stdout} {r.stderr}")
            return int(m.group(1)) / 1024, r

        out: dict[str, list[float]] = {"method_floor": [], "version": [], "b_add": [],
                                       "b_del": [], "c_add": [], "c_del": []}
        for _ in range(k):
            out["method_floor"].append(measure(["/bin/true"], self._base_env())[0])
            out["version"].append(measure([self.exe], {**self._base_env(),
                                                       "CNI_COMMAND": "VERSION"})[0])
            for m, daemon in (("b", False), ("c", True)):
                cid, pid = self.pod()
                try:
                    mb, r = measure([self.exe], self.plugin_env("ADD", cid, pid, daemon),
                                    json.dumps(self.conf()).encode())
                    out[f"{m}_add"].append(mb)
                    prev = json.loads(r.stdout)
                    out[f"{m}_del"].append(measure(
                        [self.exe], self.plugin_env("DEL", cid, pid, daemon),
                        json.dumps(self.conf(prevResult=prev)).encode())[0])
                finally:
                    self.remove(cid)
        self.results["rss_mb"] = {k: summary(v) for k, v in out.items()}

    # ---- where the time goes ------------------------------------------------------------

    def profile(self) -> None:
        log("profiling: imports and cProfile of an in-process ADD, and of a warm daemon ADD")
        import pstats

        cid, pid = self.pod()
        try:
            env = self.plugin_env("ADD", cid, pid, False)
            # -IS as the plugin file's #! line has it (-I also ignores PYTHONPROFILEIMPORTTIME)
            r = run_process([self.py, "-IS", "-X", "importtime", self.exe], env,
                            json.dumps(self.conf()).encode())
            prev = json.loads(r.stdout)
            self.plugin("DEL", cid, pid, False, self.conf(prevResult=prev))
            imports = import_table(r.stderr)
        finally:
            self.remove(cid)
        # A fresh pod: Docker never reuses an interface name, so a second ADD of the same
        # pod would ask for eth0 and get eth1 (and be rolled back).
        cid, pid = self.pod()
        try:
            env = self.plugin_env("ADD", cid, pid, False)
            prof = self.tmp / "add.prof"
            # run_plugin() rather than the executable: the executable ends with os._exit,
            # which would leave no profile behind.
            code = ("import cProfile\nfrom cni2cnm.entry import run_plugin\n"
                    f"cProfile.run('run_plugin()', {str(prof)!r})\n")
            r2 = run_process([self.py, "-I", "-c", code], env, json.dumps(self.conf()).encode())
            prev = json.loads(r2.stdout)
            self.plugin("DEL", cid, pid, False, self.conf(prevResult=prev))
            top = cprofile_table(pstats.Stats(str(prof)))
        finally:
            self.remove(cid)
        self.results["profile"] = {"imports": imports, "cprofile_in_process_add": top,
                                   "cprofile_daemon_add": self._profile_daemon_add()}

    def _profile_daemon_add(self, runs: int = 5) -> list[dict[str, Any]]:
        """run_request (what each daemon thread runs) for ADDs in this warm process; the last
        one under cProfile."""
        import cProfile
        import pstats

        from cni2cnm.daemon import engines, logroute
        from cni2cnm.daemon.process import warm_up
        from cni2cnm.daemon.runner import Runner
        from cni2cnm.engine import ClientPool

        warm_up()
        run_request = Runner(engines.pooled(ClientPool()))
        prof = cProfile.Profile()
        logroute.install()  # the daemon's log routing; this process ends after the bench
        for i in range(runs):
            cid, pid = self.pod()
            try:
                env = {k: v for k, v in self.plugin_env("ADD", cid, pid, True).items()
                       if k.startswith("CNI") or k == "DOCKER_HOST"}
                if i == runs - 1:
                    prof.enable()
                rc, out, err = run_request(env, json.dumps(self.conf()).encode())
                prof.disable()
                if rc != 0:
                    raise RuntimeError(f"daemon ADD: {out} {err}")
                env["CNI_COMMAND"] = "DEL"
                run_request(env, json.dumps(self.conf(prevResult=json.loads(out)))
                            .encode())
            finally:
                self.remove(cid)
        return cprofile_table(pstats.Stats(prof))


def import_table(stderr: str) -> dict[str, Any]:
    """-X importtime output: total, self time per top-level package, and the cumulative time
    of what the script imports directly and of every cni2cnm module."""
    per_pkg: dict[str, float] = {}
    cumulative: dict[str, float] = {}
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3 or \
                not parts[0].strip().isdigit():
            continue
        self_us, cum_us, raw = int(parts[0]), int(parts[1]), parts[2]
        name = raw.strip()
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2
        pkg = name.split(".")[0]
        per_pkg[pkg] = per_pkg.get(pkg, 0.0) + self_us / 1e3
        if depth == 0 or name.startswith("cni2cnm"):
            cumulative[name] = max(cumulative.get(name, 0.0), cum_us / 1e3)
    return {"total_ms": sum(per_pkg.values()),
            "self_ms_by_package": dict(sorted(per_pkg.items(), key=lambda kv: -kv[1])[:15]),
            "cumulative_ms": dict(sorted(cumulative.items(), key=lambda kv: -kv[1])[:25])}


def cprofile_table(st: Any, limit: int = 30) -> list[dict[str, Any]]:
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():
        engine_io = fn == "getresponse" and "http/client" in file
        netlink_open = fn == "__init__" and "pyroute2/iproute" in file
        ours = "/cni2cnm/" in file or engine_io or netlink_open or fn == "_find_and_load"
        rows.append({"function": f"{Path(file).name}:{line}({fn})", "calls": nc,
                     "tottime_ms": tt * 1e3, "cumtime_ms": ct * 1e3, "ours": ours})
    rows.sort(key=lambda r: -r["cumtime_ms"])
    return [r for r in rows if r["ours"]][:limit]


# ==== the report ==================================================================================


def fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:7.1f}"


def report(res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lines = []
    cyc = res["cycles"]
    n = cyc["a"]["add"]["n"]
    lines.append(f"Latency, {n} interleaved cycles (ms)")
    lines.append(f"{'':18} {'ADD med':>8} {'ADD p95':>8} {'DEL med':>8} {'DEL p95':>8} "
                 f"{'cycle med':>9}")
    for m in MODES:
        r = cyc[m]
        lines.append(f"{MODE_NAMES[m]:18} {fmt(r['add']['median']):>8} "
                     f"{fmt(r['add']['p95']):>8} {fmt(r['del']['median']):>8} "
                     f"{fmt(r['del']['p95']):>8} {fmt(r['cycle']['median']):>9}")
    v = cyc["version"]["ms"]
    lines.append(f"{'VERSION (in-proc)':18} {fmt(v['median']):>8} {fmt(v['p95']):>8}")
    if "add_connect_inspect" in cyc["a"]:
        lines.append(f"(a) ADD is detach none + connect + inspect; connect + inspect alone: "
                     f"median {cyc['a']['add_connect_inspect']['median']:.1f} ms")
    for m in DAEMON_MODES:
        c = cyc.get(m, {})
        if c.get("add_in_daemon", {}).get("n"):
            lines.append(
                f"({m}) split, medians: ADD {c['add_in_daemon']['median']:.1f} ms in the daemon "
                f"+ {c['add_outside_daemon']['median']:.1f} ms client (start-up, socket, exit); "
                f"DEL {c['del_in_daemon']['median']:.1f} + "
                f"{c['del_outside_daemon']['median']:.1f}")

    def ratio(x: str, y: str, what: str) -> float:
        return float(cyc[x][what]["median"] / cyc[y][what]["median"])

    for m in AUTO_MODES:
        if "fallbacks" in cyc.get(m, {}):
            lines.append(f"({m}) requests that ran in-process during the cycles: "
                         f"{cyc[m]['fallbacks']}")
    first = res.get("first")
    if first:
        lines.append(f"First request after install, medians of {first['b_add']['n']} rounds: "
                     f"(e) first ADD {first['e_first_add']['median']:.1f} ms (it starts the "
                     f"daemon), (b) ADD {first['b_add']['median']:.1f} ms")
    lines.append("Ratios of medians (ADD / DEL / cycle):")
    for x, y in (("b", "a"), ("c", "a"), ("e", "a"), ("f", "a"), ("g", "a"), ("b", "d"),
                 ("c", "d"), ("e", "d"), ("f", "d")):
        lines.append(f"  {x}/{y}: {ratio(x, y, 'add'):.2f} / {ratio(x, y, 'del'):.2f} / "
                     f"{ratio(x, y, 'cycle'):.2f}")
    rss = res.get("rss_mb")
    if rss:
        lines.append("Peak RSS, MB (max of runs): " + ", ".join(
            f"{k} {v['max']:.1f}" for k, v in rss.items()))
    mem = res.get("daemon_memory_mb")
    if mem:
        lines.append(f"Daemon: RSS {mem.get('VmRSS', math.nan):.1f} MB, peak "
                     f"{mem.get('VmHWM', math.nan):.1f} MB")

    conc = res.get("concurrency")
    if conc:
        lines.append(f"{conc['n']} pods, {conc['n']} in flight (median of rounds: wall ms; "
                     "throughput vs floor; errors)")
        for m in MODES:
            if m in conc:
                r = conc[m]
                tput = [r.get(f"{op}_throughput_vs_floor", math.nan) for op in ("add", "del")]
                lines.append(f"  {MODE_NAMES[m]:16} ADD {r['add_wall_ms']:8.0f} ({tput[0]:.2f}x)"
                             f"  DEL {r['del_wall_ms']:8.0f} ({tput[1]:.2f}x)"
                             f"  errors {r['errors']}")
                for op in ("add", "del"):
                    lines.append(f"      CPU ms per {op.upper()}: " + ", ".join(
                        f"{k} {v:.1f}" for k, v in r["cpu_ms_per_op"][op].items() if v))
    gc = res.get("gc")
    if gc:
        for m, r in gc.items():
            lines.append(f"GC of {r['records']} stale records, {MODE_NAMES[m]}: {r['ms']:.0f} ms "
                         f"({r['ms'] / r['records']:.2f} ms/record), {r['left']} left")

    a, b, cc = (cyc[m] for m in ("a", "b", "c"))
    checks: dict[str, tuple[float, float, str]] = {
        "(c) ADD - (a) ADD, ms": (cc["add"]["median"] - a["add"]["median"],
                                  TARGETS["c_add_over_floor_ms"], "<="),
        "(c) DEL - (a) DEL, ms": (cc["del"]["median"] - a["del"]["median"],
                                  TARGETS["c_del_over_floor_ms"], "<="),
        "(c) cycle / (a) cycle": (ratio("c", "a", "cycle"), TARGETS["c_cycle_vs_floor"], "<="),
        "(c) cycle / (d) cycle": (ratio("c", "d", "cycle"), TARGETS["c_cycle_vs_cli"], "<="),
        "(b) ADD - (a) ADD, ms": (b["add"]["median"] - a["add"]["median"],
                                  TARGETS["b_op_over_floor_ms"], "<="),
        "(b) DEL - (a) DEL, ms": (b["del"]["median"] - a["del"]["median"],
                                  TARGETS["b_op_over_floor_ms"], "<="),
        "VERSION median, ms": (cyc["version"]["ms"]["median"], TARGETS["version_ms"], "<"),
        "(e) cycle / (a) cycle": (ratio("e", "a", "cycle"), TARGETS["e_cycle_vs_floor"], "<="),
        "(f) cycle / (a) cycle": (ratio("f", "a", "cycle"), TARGETS["f_cycle_vs_floor"], "<="),
        "(g) cycle / (a) cycle": (ratio("g", "a", "cycle"), TARGETS["g_cycle_vs_floor"], "<="),
    }
    if first:
        checks["(e) first ADD - (b) ADD, ms"] = (
            first["e_first_add"]["median"] - first["b_add"]["median"],
            TARGETS["first_over_inprocess_ms"], "<=")
    if rss:
        checks["thin client (c) peak RSS, MB"] = (
            max(rss["c_add"]["max"], rss["c_del"]["max"]), TARGETS["rss_client_mb"], "<")
        checks["in-process (b) peak RSS, MB"] = (
            max(rss["b_add"]["max"], rss["b_del"]["max"]), TARGETS["rss_inprocess_mb"], "<")
    for m in DAEMON_MODES:
        if conc and m in conc and "a" in conc:
            checks[f"{conc['n']} concurrent ADDs ({m}) throughput / (a)"] = (
                conc[m]["add_throughput_vs_floor"], TARGETS["concurrent_throughput_vs_floor"],
                ">=")
            checks[f"{conc['n']} concurrent ({m}) errors"] = (conc[m]["errors"], 0, "==")
    verdicts = {}
    lines.append("Targets:")
    for name, (value, limit, op) in checks.items():
        ok = {"<=": value <= limit, "<": value < limit, ">=": value >= limit,
              "==": value == limit}[op]
        verdicts[name] = {"value": value, "limit": limit, "op": op, "met": ok}
        lines.append(f"  {'met ' if ok else 'MISS'} {name}: {value:.2f} (target {op} {limit})")
    prof = res.get("profile")
    if prof:
        imp = prof["imports"]
        lines.append(f"Imports of an in-process ADD: {imp['total_ms']:.0f} ms; self time by "
                     "package: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                             list(imp["self_ms_by_package"].items())[:10]))
        lines.append("  cumulative: " + ", ".join(
            f"{k} {v:.0f}" for k, v in list(imp["cumulative_ms"].items())[:10]))
        for title, key in (("in-process ADD", "cprofile_in_process_add"),
                           ("warm daemon ADD (run_request)", "cprofile_daemon_add")):
            lines.append(f"cProfile, {title} (cumulative ms, calls):")
            for r in prof[key][:16]:
                lines.append(f"  {r['cumtime_ms']:8.1f} {r['calls']:6d}  {r['function']}")
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=30)
    p.add_argument("--concurrent", type=int, default=50)
    p.add_argument("--concurrent-modes", default="a,c,b,f",
                   type=lambda s: [m for m in s.split(",") if m])
    p.add_argument("--concurrent-rounds", type=int, default=5)
    p.add_argument("--gc-records", type=int, default=1000)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--executable", default="installed",
                   help='"installed" (default: a copy installed as `pip install .` would), '
                        '"dev" (this venv\'s editable install) or a path')
    p.add_argument("--rss-runs", type=int, default=5)
    p.add_argument("--first-runs", type=int, default=5,
                   help="rounds of the first request after install (e) against (b)")
    p.add_argument("--serve", default="-m cni2cnm.daemon", metavar="ARGS",
                   help="how the daemon is started, after the interpreter (to A/B a variant)")
    p.add_argument("--json", metavar="FILE", help="write all results and samples here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: must run as root (sudo)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    load_start = os.getloadavg()
    res: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_interrupts_raise())
            bench = Bench(args, stack)
            res = bench.results
            if args.first_runs:
                bench.first_requests()
            bench.cycles()
            if args.concurrent:
                bench.concurrency()
            if args.gc_records:
                bench.gc()
            if args.rss_runs:
                bench.rss()
            if not args.no_profile:
                bench.profile()
            res["daemon_memory_mb"] = bench.daemon_memory()
            res["meta"] = {
                "engine": bench.api.version().get("Version"),
                "api": bench.api.api_version, "python": sys.version.split()[0],
                "docker_cli": subprocess.run(["docker", "--version"], capture_output=True,
                                             text=True, check=False).stdout.strip(),
                "docker_cli_path": shutil.which("docker"), "executable": bench.exe,
                "cpus": os.cpu_count(), "loadavg_start": load_start,
                "loadavg_end": os.getloadavg(),
                "seconds": time.monotonic() - t0,
            }
    finally:
        if args.json and res:
            Path(args.json).write_text(json.dumps(res, indent=1, default=str))
            log(f"wrote {args.json}")
    text, verdicts = report(res)
    res["targets"] = verdicts
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGTERM like Ctrl-C: unwind, so every cleanup runs. Only in this process: pyroute2
    (the plugin, profiled in this process) forks children and may SIGTERM them, and a child
    that unwound would run this process's cleanups."""
    me = os.getpid()

    def raise_interrupt(*_: Any) -> None:
        if os.getpid() != me:
            os._exit(1)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    old_int = signal.signal(signal.SIGINT, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)


if __name__ == "__main__":
    sys.exit(main())
