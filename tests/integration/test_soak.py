"""Soak: 200 pod lifecycles across 3 networks, 10 in flight, one engine restart half-way.

Each cycle is what a runtime does for one pod: start a pause container (--network none),
ADD (followed by DEL when ADD fails, as runtimes do), DEL (retried while the engine says
"try again later"), remove the container. Bounded in count and time; it stops by itself.

Even cycles go through a `cni2cnm serve` daemon, odd ones run in-process, at the same time and
on the same store, as on a node whose daemon comes and goes; the engine restart hits both
(and the daemon's warm engine connections). So this test covers both modes itself, and the
daemon-mode CI pass does not run it again (marker own_modes).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from c2ctest import LABEL, SESSION_ID, Resources, unique_name
from daemonrun import SOCKET_ENV, Daemon, running_daemon
from pluginrun import Plugin, proc_netns
from privateengine import PrivateEngine, private_engine

CYCLES = 200
IN_FLIGHT = 10
NETWORKS = 3
DEADLINE_S = 300  # every retry gives up after this; below the pytest timeout

pytestmark = [pytest.mark.timeout(DEADLINE_S + 180), pytest.mark.own_modes]


@pytest.fixture(scope="module")
def peng(docker_host: str) -> Iterator[PrivateEngine]:
    with private_engine() as engine:
        yield engine


def retry(fn: Any, until: float) -> Any:
    """Call fn until it does not raise (the engine may be restarting)."""
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > until:
                raise
            time.sleep(0.3)


def test_soak_with_engine_restart(peng: PrivateEngine) -> None:
    # the daemon must exit 0 on SIGTERM at the end
    with Resources(peng.client) as res, running_daemon() as daemon:
        run_soak(peng, res, daemon)


def run_soak(peng: PrivateEngine, res: Resources, daemon: Daemon) -> None:
    state = str(res.tmpdir())
    nets = [res.network() for _ in range(NETWORKS)]
    plugins = [Plugin(peng.host, state, n.name) for n in nets]
    until = time.monotonic() + DEADLINE_S
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    done = 0
    restarted = threading.Event()

    def count(key: str) -> None:
        with lock:
            counts[key] += 1

    def start_pod(name: str) -> Any:
        """Create and start a pause container; on failure remove what half-exists.

        An engine restart can land between create and start: the container then exists
        (stopped) and a plain retry of `run` would hit "name already in use" forever.
        """
        try:
            return peng.client.containers.run(
                peng.images.pause, name=name, detach=True, network_mode="none",
                labels={LABEL: SESSION_ID})
        except Exception:
            with contextlib.suppress(Exception):
                peng.client.api.remove_container(name, force=True)
            raise

    def cycle(i: int) -> None:
        nonlocal done
        plugin = plugins[i % NETWORKS]
        name = unique_name(f"soak{i}")
        pod = retry(lambda: start_pod(name), until)
        try:
            netns = retry(lambda: proc_netns(pod), until)
            mode = "daemon" if i % 2 == 0 else "inproc"
            env = {SOCKET_ENV: str(daemon.path) if mode == "daemon" else ""}

            def run(command: str, prev: Any = None) -> Any:
                out = plugin.run(command, pod.id, netns, prev=prev, env=env)
                if mode == "daemon" and "in-process" in out.stderr:
                    count("daemon_fallback")
                return out

            add = run("ADD")
            count(f"{mode}_add_ok" if add.rc == 0 else f"{mode}_add_error_{add.doc['code']}")
            prev = add.doc if add.rc == 0 else None
            while True:  # a runtime retries DEL until it succeeds
                out = run("DEL", prev)
                if out.rc == 0:
                    count("del_ok")
                    break
                count(f"{mode}_del_retry_{out.doc['code']}")
                assert time.monotonic() < until, f"DEL of {name} never succeeded: {out.stdout}"
                time.sleep(0.3)
            if not add.rc:
                leftover = subprocess.run(["nsenter", f"--net={netns}", "ip", "-o", "link"],
                                          capture_output=True, text=True)
                if leftover.returncode == 0 and "eth0" in leftover.stdout:
                    count("stray_interface")
        finally:
            retry(lambda: pod.remove(force=True), until)
            with lock:
                done += 1

    def restarter() -> None:
        while done < CYCLES // 2 and time.monotonic() < until:
            time.sleep(0.1)
        peng.restart()
        restarted.set()

    t = threading.Thread(target=restarter)
    t.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        list(pool.map(cycle, range(CYCLES)))
    t.join()
    elapsed = time.monotonic() - started

    # Nothing left: no record, no endpoint, no stray interface.
    records = [r for p in plugins for r in p.records()]
    endpoints = 0
    for n in nets:
        n.reload()
        endpoints += len(n.attrs["Containers"] or {})
    print(f"\nsoak: {CYCLES} cycles (half through the daemon) in {elapsed:.1f}s, {IN_FLIGHT} in "
          f"flight, engine restarted once; {dict(sorted(counts.items()))}; "
          f"leftover records={len(records)} endpoints={endpoints} "
          f"stray_interfaces={counts['stray_interface']}")
    assert restarted.is_set()
    assert counts["del_ok"] == CYCLES
    assert counts["daemon_fallback"] == 0
    for mode in ("daemon", "inproc"):
        assert counts[f"{mode}_add_ok"] >= CYCLES // 4, mode
    assert records == []
    assert endpoints == 0
    assert counts["stray_interface"] == 0
