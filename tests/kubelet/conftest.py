"""Fixtures of the Kubernetes tests: a real kubelet on a node of the test's own (kubenode.py).

Every test here is marked ``kubelet`` and deselected by default (pyproject's addopts); run
them with ``sudo scripts/test.sh tests/kubelet -m kubelet`` (.ci/run does, once, on engine
20.10).  What they need and cannot find (the kubelet build, containerd, ctr, unshare,
nsenter, the reference loopback plugin) makes them skip, or FAIL under CI=true.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from c2ctest import mark_tests_under, unavailable
from kubenode import MODES, SCRIPTS, KubeNode, kube_node, require_node_tools

HERE = Path(__file__).resolve().parent

# Step -> seconds, per mode, printed at the end of the run.
TIMINGS: dict[str, dict[str, float | int]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_tests_under(HERE, items, pytest.mark.kubelet)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for mode, steps in TIMINGS.items():
        terminalreporter.write_line(
            f"kubelet node ({mode}): " + ", ".join(
                f"{k} {v}" if isinstance(v, int) else f"{k} {v:.1f} s" for k, v in steps.items()))


@pytest.fixture(scope="session")
def kubelet_bin() -> str:
    """The kubelet, built from Debian's registry by scripts/kubelet.sh (cached in .engines)."""
    require_node_tools()
    proc = subprocess.run(["bash", str(SCRIPTS / "kubelet.sh"), "bin"], capture_output=True,
                          text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        unavailable(f"scripts/kubelet.sh bin failed: {proc.stderr[-2000:]}")
    return proc.stdout.strip()


@pytest.fixture(scope="module", params=MODES)
def node(request: pytest.FixtureRequest, kubelet_bin: str) -> Iterator[KubeNode]:
    """A node per runtime mode, shared by the tests of a module (they run in file order)."""
    with kube_node(request.param, kubelet_bin) as n:
        TIMINGS[n.mode] = n.timings
        yield n
