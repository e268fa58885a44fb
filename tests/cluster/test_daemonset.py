"""examples/daemonset.yaml on a real one-node cluster (containerd's CRI): the DaemonSet's pod
places the shim and a conflist, a Deployment's pods get Docker-network addresses through the
shim and the pod's daemon, the serving pod restarts while pods come and go (no pod fails for
longer than the restart, no DEL lost), and deleting the DaemonSet leaves nothing of it.

The tests share one cluster and run in file order; each step's time is in cluster.timings
(printed at the end of the run).
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import pytest
from cluster import ClusterNode
from kubenode import BUSYBOX_IMAGE, POD_SUBNET, wait_for

pytestmark = [pytest.mark.timeout(900)]

SUBNET = ipaddress.ip_network(POD_SUBNET)
DS = "app=cni2cnm"


def deployment(name: str, replicas: int) -> str:
    script = (f"trap 'exit 0' TERM; mkdir -p /w; echo {name} >/w/index.html; "
              "httpd -p 8080 -h /w; while :; do sleep 1; done")
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "web", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script]}]},
            },
        },
    })


def ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return pod["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds)


def wait_ready(cluster: ClusterNode, selector: str, count: int, namespace: str = "default",
               timeout: float = 120) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        cluster.check_alive()
        pods = [p for p in cluster.api_pods(selector, namespace) if ready(p)]
        return pods if len(pods) == count else None
    try:
        return wait_for(f"{count} ready pods {selector}", probe, timeout, 0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}; pods: {pod_summary(cluster, selector, namespace)}") from None


def pod_summary(cluster: ClusterNode, selector: str, namespace: str) -> str:
    return cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "wide",
                           check=False) + cluster.kubectl(
        "get", "events", "-A", "--sort-by", ".lastTimestamp", check=False)[-3000:]


def ds_pod(cluster: ClusterNode) -> dict[str, Any]:
    [pod] = wait_ready(cluster, DS, 1, "kube-system", 120)
    return pod


def pending_dels(cluster: ClusterNode) -> list[str]:
    return cluster.run(cluster.in_mounts("sh", "-c", "ls -A /run/cni2cnm/pending 2>/dev/null "
                                                     "|| true")).stdout.split()


def test_daemonset_installs_the_shim_and_conflist(cluster: ClusterNode) -> None:
    t0 = time.monotonic()
    cluster.kubectl("apply", "-f", "-", stdin=cluster.daemonset_manifest())
    ds_pod(cluster)
    cluster.timings["DaemonSet ready"] = round(time.monotonic() - t0, 2)
    shim = cluster.cni_bin / "cni2cnm"
    assert shim.read_bytes()[:4] == b"\x7fELF", "the plugin file is not the static shim"
    assert not (cluster.cni_bin / "cni2cnm-python").exists()
    [conflist] = cluster.cni_conf.glob("*.conflist")
    entry = json.loads(conflist.read_text())["plugins"][0]
    assert entry["type"] == "cni2cnm" and entry["daemon"] == "manual"
    assert "daemonSocket" not in entry  # the default socket, where the pod's serve listens
    wait_for("the node Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for n in cluster.get("nodes")["items"] for c in n["status"]["conditions"]), 60, 1)


def test_deployment_pods_get_docker_network_addresses(cluster: ClusterNode) -> None:
    t0 = time.monotonic()
    cluster.kubectl("apply", "-f", "-", stdin=deployment("web", 3))
    pods = wait_ready(cluster, "app=web", 3)
    cluster.timings["3 pods ready"] = round(time.monotonic() - t0, 2)
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3 and all(ipaddress.ip_address(ip) in SUBNET for ip in ips), ips
    assert set(cluster.endpoints().values()) >= ips
    assert len(cluster.records()) == 3


def test_serving_pod_restarts_while_pods_come_and_go(cluster: ClusterNode) -> None:
    old = ds_pod(cluster)["metadata"]["name"]
    cluster.kubectl("apply", "-f", "-", stdin=deployment("api", 0))
    t0 = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", "kube-system", old, "--wait=false")
    cluster.kubectl("scale", "deployment/web", "--replicas", "1")   # DELs during the restart
    cluster.kubectl("scale", "deployment/api", "--replicas", "3")   # ADDs during the restart
    new = wait_for("a new serving pod", lambda: next(
        (p for p in cluster.api_pods(DS, "kube-system")
         if p["metadata"]["name"] != old and ready(p)), None), 120, 0.5)
    restart = time.monotonic() - t0
    api = wait_ready(cluster, "app=api", 3, timeout=180)
    added = time.monotonic() - t0
    wait_ready(cluster, "app=web", 1, timeout=120)
    cluster.timings["serving pod restart"] = round(restart, 2)
    cluster.timings["3 pods added across it"] = round(added, 2)
    assert new["metadata"]["name"] != old
    assert all(ipaddress.ip_address(p["status"]["podIP"]) in SUBNET for p in api)
    # The kubelet retries a failed sandbox with a back-off: allow it one step after the restart.
    assert added < restart + 30, f"pods ready {added:.0f} s after the restart began " \
                                 f"(the restart took {restart:.0f} s)"
    wait_for("the kept DELs finished", lambda: not pending_dels(cluster), 60, 1)


def test_scale_to_zero_loses_no_del(cluster: ClusterNode) -> None:
    t0 = time.monotonic()
    for name in ("web", "api"):
        cluster.kubectl("scale", f"deployment/{name}", "--replicas", "0")
    wait_for("the pods gone from the API",
             lambda: not cluster.api_pods("app in (web,api)"), 240, 1)
    wait_for("no record, endpoint or proxy sandbox left", lambda: not (
        cluster.records() or cluster.endpoints() or cluster.proxy_sandboxes()), 120, 1)
    cluster.timings["scale to 0, all DELs done"] = round(time.monotonic() - t0, 2)
    assert not pending_dels(cluster)
    cluster.kubectl("delete", "deployment", "web", "api")


def test_deleting_the_daemonset_leaves_nothing(cluster: ClusterNode) -> None:
    t0 = time.monotonic()
    cluster.kubectl("delete", "-f", "-", "--wait=true", stdin=cluster.daemonset_manifest(),
                    timeout=180)
    wait_for("the serving pod gone", lambda: not cluster.api_pods(DS, "kube-system"), 120, 1)
    cluster.timings["DaemonSet deleted"] = round(time.monotonic() - t0, 2)
    assert sorted(p.name for p in cluster.cni_bin.iterdir()) == ["loopback"]
    assert list(cluster.cni_conf.iterdir()) == []
    assert not (cluster.state_dir / "install-manifest.json").exists()
    assert not cluster.records()
    # No socket and no kept DEL: only the (empty) directories the hostPath volumes made.
    assert not cluster.run(cluster.in_mounts("find", "/run/cni2cnm", "!", "-type", "d")
                           ).stdout.split()
