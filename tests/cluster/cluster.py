"""A one-node Kubernetes cluster of the test's own: etcd (bookworm's etcd-server), kube-apiserver,
kube-controller-manager, kube-scheduler and kubectl (v1.20.2, `scripts/kubelet.sh cluster`)
beside the kubelet node of tests/kubelet (kubenode.KubeNode: dockerd, containerd's CRI, the
private mount and network namespaces, the close() that stops everything by PID and reports what
was left).  The difference: nothing installs cni2cnm on the node; the DaemonSet of
examples/daemonset.yaml does, from the image scripts/image.sh builds.

The control plane runs in the node's namespaces too (its ports stay off the machine), on a
private address on the namespace's loopback interface (NODE_IP); the kubelet registers with
--kubeconfig.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubenode import (
    CNI_VERSIONS,
    DOCKER_NETWORK,
    REFERENCE_PLUGINS,
    SCRIPTS,
    Below,
    KubeNode,
    NodeError,
    runtime_env,
    tail,
    wait_for,
)
from machine import stop_pid

NODE_IP = "10.233.250.1"
SERVICE_RANGE = "10.233.251.0/24"
API_PORT = 6443
TOKEN = "c2c-cluster-token"
IMAGE = "local/cni2cnm:test"
MANIFEST = SCRIPTS.parent / "examples" / "daemonset.yaml"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass
class ClusterNode(KubeNode):
    """KubeNode (containerd or dockershim mode) plus a control plane; cni2cnm comes from the
    DaemonSet (its init container writes the conflist with the mode's cniVersion)."""

    bin_dir: Path = Path()
    control: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    cp_dir = Below("cp")  # the control plane's
    kubeconfig = Below("cp", "kubeconfig")

    # ---- start: the node's steps, the control plane before the kubelet ----------------------

    def start_cluster(self, bin_dir: str, image_tar: str) -> None:
        self.bin_dir = Path(bin_dir)
        self.cp_dir.mkdir()
        # The kubelet registers with the API server: a wrapper adds what a standalone one lacks.
        wrapper = self.cp_dir / "kubelet"
        wrapper.write_text(f'#!/bin/sh\nexec {self.bin_dir / "kubelet"} "$@" '
                           f"--kubeconfig {self.kubeconfig} --node-ip {NODE_IP}\n")
        wrapper.chmod(0o755)
        self.start(str(wrapper))
        self.timed("image import", lambda: self._import_image(image_tar))

    def _install_plugin(self) -> None:  # the node's own: the loopback plugin, empty dirs
        for d in (self.cni_bin, self.cni_conf, self.state_dir):
            d.mkdir(parents=True)
        self.run(["cp", str(REFERENCE_PLUGINS / "loopback"), str(self.cni_bin / "loopback")])
        self._unshadow_run_netns()
        self.timed("control plane", self._start_control_plane)

    def _unshadow_run_netns(self) -> None:
        """The DaemonSet's HostToContainer mount of /run/netns needs it a shared (or slave)
        mount: `ip netns add` made the node's one so, but the machine's own /run/netns mount
        (private in this namespace) lies under the node's tmpfs /run, and containerd checks the
        first /run/netns of mountinfo.  Move the tmpfs aside, drop that copy (in this
        namespace only), move it back."""
        aside = self.dir / "run-aside"
        aside.mkdir()
        self.run(self.in_mounts("sh", "-c", f"mount --move /run {aside} && {{ ! mountpoint "
                                "-q /run/netns || umount -l /run/netns; "
                                f"mount --move {aside} /run; }}"))
        aside.rmdir()

    def _start_control_plane(self) -> None:
        d = self.cp_dir
        self.run(self.in_node("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo"))
        self.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"])
        (d / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {
                "server": f"https://{NODE_IP}:{API_PORT}",
                "certificate-authority": str(d / "apiserver" / "apiserver.crt")}}],
            "users": [{"name": "u", "user": {"token": TOKEN}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        }))
        b = self.bin_dir
        self._spawn("etcd", [str(b / "etcd"), "--data-dir", str(d / "etcd"),
                             "--listen-client-urls", "http://127.0.0.1:2379",
                             "--advertise-client-urls", "http://127.0.0.1:2379",
                             "--listen-peer-urls", "http://127.0.0.1:2380"])
        self._spawn("kube-apiserver", [
            str(b / "kube-apiserver"), "--etcd-servers", "http://127.0.0.1:2379",
            "--insecure-port", "0", "--secure-port", str(API_PORT),
            "--bind-address", NODE_IP, "--advertise-address", NODE_IP,
            "--cert-dir", str(d / "apiserver"), "--token-auth-file", str(d / "tokens.csv"),
            "--authorization-mode", "AlwaysAllow", "--allow-privileged",
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(d / "sa.key"),
            "--service-account-signing-key-file", str(d / "sa.key"),
            "--disable-admission-plugins", "ServiceAccount",
            "--kubelet-preferred-address-types", "InternalIP"])
        wait_for("the API server", lambda: self.kubectl("get", "--raw", "/readyz",
                                                        check=False).strip() == "ok", 90, 0.5)
        common = ["--kubeconfig", str(self.kubeconfig), "--leader-elect=false", "--port", "0"]
        self._spawn("kube-controller-manager", [
            str(b / "kube-controller-manager"), *common, "--cert-dir", str(d / "cm"),
            "--controllers", "*,-serviceaccount-token"])
        self._spawn("kube-scheduler", [str(b / "kube-scheduler"), *common,
                                       "--cert-dir", str(d / "sched")])

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.cp_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.control[name] = subprocess.Popen(
            self.in_node(*argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env=runtime_env(), cwd=self.cp_dir, start_new_session=True)
        log.close()

    def _import_image(self, image_tar: str) -> None:
        """The image into the node's dockerd (docker import) and containerd (ctr import)."""
        env = {**os.environ, "DOCKER_HOST": self.docker_host}
        self.run(["docker", "import", "-c", 'ENTRYPOINT ["/usr/local/bin/cni2cnm"]',
                  image_tar, IMAGE], env=env, timeout=300)
        if self.mode != "containerd":
            return
        saved = self.dir / "image.tar"
        self.run(["docker", "save", "-o", str(saved), IMAGE], env=env, timeout=300)
        self.ctr("images", "import", str(saved))
        saved.unlink()

    def check_alive(self) -> None:
        super().check_alive()
        for name, proc in self.control.items():
            if proc.poll() is not None:
                raise NodeError(f"{name} exited ({proc.returncode}): "
                                f"{tail(self.cp_dir / f'{name}.log')}")

    # ---- the API ------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 60) -> str:
        cmd = self.in_node(str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig),
                           *args)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()[-1500:]}")
        return proc.stdout

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", "-o", "json", *args))

    def api_pods(self, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
        return list(self.get("pods", "-n", namespace, "-l", selector)["items"])

    def daemonset_manifest(self) -> str:
        """examples/daemonset.yaml for this node: the local image, the node's network and
        paths, the API server at the node's address (no kube-proxy here for the service
        address), and a service account directory (token, CA) as a real cluster mounts one
        (this API server's admission makes none)."""
        sa = self.cp_dir / "sa"
        if not sa.exists():
            sa.mkdir()
            (sa / "token").write_text(TOKEN)
            (sa / "ca.crt").write_bytes((self.cp_dir / "apiserver" / "apiserver.crt")
                                        .read_bytes())
        mounts = "            - {name: cni-conf, mountPath: /host/etc/cni/net.d}   # preStop's"
        swaps = {
            "registry.example/cni2cnm:0.1.0": IMAGE,
            "image: " + IMAGE: "image: " + IMAGE + "\n          imagePullPolicy: Never",
            "{name: CNI2CNM_NETWORK, value: pods}": f"{{name: CNI2CNM_NETWORK, value: "
                                                    f"{DOCKER_NETWORK}}}",
            "{name: CNI2CNM_DAEMONSET, value: cni2cnm}":
                "{name: CNI2CNM_DAEMONSET, value: cni2cnm}\n"
                f"            - {{name: CNI2CNM_APISERVER, value: "
                f"'https://{NODE_IP}:{API_PORT}'}}",
            "command: [cni2cnm-node, install]\n          env:":
                "command: [cni2cnm-node, install]\n          env:\n"
                f"            - {{name: CNI2CNM_CNI_VERSION, value: '{CNI_VERSIONS[self.mode]}'}}",
            mounts: "            - {name: sa, mountPath: /var/run/secrets/kubernetes.io/"
                    "serviceaccount}\n" + mounts,
            "path: /opt/cni/bin,": f"path: {self.cni_bin},",
            "path: /etc/cni/net.d,": f"path: {self.cni_conf},",
            "path: /var/lib/cni/cni2cnm,": f"path: {self.state_dir},",
            "path: /var/run/docker.sock, type: Socket}}":
                f"path: {self.engine_dir}/docker.sock, type: Socket}}}}\n"
                f"        - {{name: sa, hostPath: {{path: {sa}, type: Directory}}}}",
        }
        text = MANIFEST.read_text()
        for old, new in swaps.items():
            assert old in text, f"{MANIFEST} no longer has {old!r}"
            text = text.replace(old, new)
        return text

    # ---- close ------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """The control plane first (by PID), then the node (KubeNode.close)."""
        try:
            for name in reversed(CONTROL_PLANE):
                proc = self.control.get(name)
                if proc is not None and proc.poll() is None:
                    stop_pid(proc.pid, 15)
                    proc.wait(5)
        finally:  # the node is torn down even when a component would not stop
            problems = super().close()
        return problems


def cluster_bin_dir() -> str:
    return script_answer("kubelet.sh", "cluster", timeout=3600)


def image_tarball() -> str:
    return script_answer("image.sh", "tar", timeout=1800)


def script_answer(script: str, command: str, timeout: float) -> str:
    """What `scripts/SCRIPT COMMAND` prints (a path): it builds first when nothing is cached."""
    proc = subprocess.run(["bash", str(SCRIPTS / script), command], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise NodeError(f"scripts/{script} {command} failed: {proc.stderr[-2000:]}")
    return proc.stdout.strip()
