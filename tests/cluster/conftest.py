"""Fixtures of the cluster test: a one-node cluster of the test's own (cluster.py) that gets
cni2cnm from the DaemonSet of examples/daemonset.yaml.

Its tests are marked ``cluster`` and deselected unless ``-m cluster`` is given (.ci/run runs
them once, on engine 20.10: ``scripts/test.sh tests/cluster -m cluster``).  What they need and
cannot find or build (the cluster's binaries, the image, containerd, unshare, nsenter, the
loopback plugin) makes them skip, or FAIL under CI=true.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from c2ctest import mark_tests_under, unavailable

HERE = Path(__file__).resolve().parent

if TYPE_CHECKING:
    from cluster import ClusterNode

TIMINGS: dict[str, float] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: a one-node Kubernetes cluster (tests/cluster; "
                                       "deselected unless -m cluster is given)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Not even imported unless -m cluster is given (a whole-suite run never starts one)."""
    if "cluster" not in (config.option.markexpr or "") and collection_path.suffix == ".py" \
            and collection_path.parent == HERE and collection_path.name != "conftest.py":
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_tests_under(HERE, items, pytest.mark.cluster)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_line(
            "cluster: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module", params=("containerd", "dockershim"))
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterNode]:
    """containerd's CRI (proxy sandboxes), or the kubelet's dockershim (Docker-owned pods:
    container mode, CNI_NETNS /proc/<pid>/ns/net)."""
    from cluster import ClusterNode, cluster_bin_dir, image_tarball
    from kubenode import NodeError, require_node_tools

    require_node_tools("openssl", "docker")
    try:
        bins, tar = cluster_bin_dir(), image_tarball()
    except NodeError as e:
        unavailable(str(e))
    d = Path(tempfile.mkdtemp(prefix="c2c-cluster.", dir="/tmp"))
    node = ClusterNode(mode=request.param, dir=d)
    problems: list[str] = []
    try:
        node.start_cluster(bins, tar)
        yield node
    finally:
        TIMINGS.update({f"{node.mode}: {k}": v for k, v in node.timings.items()})
        problems = node.close()
    if problems:
        raise NodeError(f"the cluster left: {'; '.join(problems)}")
