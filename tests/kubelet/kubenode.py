"""A Kubernetes node of the test's own: a real kubelet (v1.20.2, scripts/kubelet.sh), standalone
with static pods, on containerd 1.6's CRI (pods in namespaces Docker does not own: cni2cnm's
proxy sandboxes) or on the kubelet's dockershim (pods are Docker containers: container mode),
with cni2cnm installed by `cni2cnm install` as the CNI plugin, on a dockerd of the test's own.

Isolation (nothing of the node changes):
- one mount namespace of the test's own (a holder process made by `unshare --mount
  --propagation private`): tmpfs over /run, /var/lib, /var/log and /etc/cni, so whatever the
  kubelet, containerd, libcni or dockerd write there (netns bind mounts, /var/lib/cni,
  /var/log/pods, /var/log/containers, runc state, /run/cni2cnm) stays in it; private files
  bind-mounted over the sysctls the kubelet writes (vm.overcommit_memory, vm.panic_on_oom,
  kernel.panic, kernel.panic_on_oops, kernel.keys.root_max*);
- one network namespace (the one scripts/dockerd.sh makes for the engine, inside that mount
  namespace): dockerd, containerd, the kubelet and the plugin's daemon all run there, so their
  ports (10250, 10255) and iptables rules stay off the node;
- every path the components take (roots, states, sockets, the CNI bin and conf dirs, the
  plugin's stateDir and daemon socket) is under the node's directory.
Everything is stopped by PID and the directory removed at close(), even after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from c2ctest import require, unavailable
from machine import processes_under, stop_pid, unmount_under

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
REFERENCE_PLUGINS = Path("/usr/lib/cni")
BUSYBOX = "/bin/busybox"

NODE_NAME = "c2k-node"
POD_SUBNET = "10.233.7.0/24"
DOCKER_NETWORK = "c2k-pods"
CNI_NETWORK = "c2k"
BUSYBOX_IMAGE = "local/busybox:latest"
PAUSE_IMAGE = "local/pause:3.10"
READ_ONLY_PORT = 10255
# What the kubelet writes host-wide at start (its container manager), each given a private
# file inside the node's mount namespace.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)
# Covered with a tmpfs in the node's mount namespace (all exist on a Debian node).
PRIVATE_TREES = ("/run", "/var/lib", "/var/log", "/etc/cni")
# Paths of the node a runtime or kubelet would write with its defaults; none may appear.
NODE_PATHS = ("/var/lib/cni", "/var/lib/kubelet", "/var/lib/dockershim", "/var/log/pods",
              "/var/log/containers", "/opt/cni/bin", "/opt/containerd", "/etc/cni/net.d",
              "/run/cni2cnm", "/var/run/dockershim.sock")

MODES = ("containerd", "dockershim")
# The conflist's cniVersion per runtime: the newest its libcni takes.
CNI_VERSIONS = {"containerd": "1.0.0", "dockershim": "0.4.0"}

T = TypeVar("T")


class NodeError(AssertionError):
    pass


def require_node_tools(*extra: str) -> None:
    """unavailable() unless what a node runs is installed: containerd and its tools, and
    the reference loopback plugin (and `extra` tools)."""
    require("containerd", "ctr", "unshare", "nsenter", "ip", *extra)
    if not (REFERENCE_PLUGINS / "loopback").exists():
        unavailable("the loopback CNI plugin is missing (containernetworking-plugins)")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0,
             interval: float = 0.25) -> T:
    """probe() until it returns something other than None/False; NodeError after timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            got = probe()
            if got is not None and got is not False:
                return got
        except Exception as exc:  # reported with the timeout
            last = exc
        if time.monotonic() > deadline:
            raise NodeError(f"timed out after {timeout:.0f} s waiting for {what}"
                            + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


def manifest(name: str, stubborn: bool = False) -> dict[str, Any]:
    """A static pod: busybox's httpd answers its own name on 8080; exits at once on SIGTERM,
    or, when stubborn, ignores it for its whole grace period (30 s)."""
    trap = "" if stubborn else "trap 'exit 0' TERM; "
    script = (f"{trap}mkdir -p /w; echo {name} >/w/index.html; "
              "httpd -p 8080 -h /w; while :; do sleep 1; done")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 30 if stubborn else 2,
            "containers": [{"name": "web", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script]}],
        },
    }


@dataclass
class Pod:
    name: str            # the manifest's name (the kubelet adds -<node name>)
    phase: str
    ip: str
    container_id: str    # the app container, "containerd://..." or "docker://..."
    uid: str


class Below:
    """A path under the node's directory, as a read-only attribute of the node."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, node: Any, owner: type | None = None) -> Path:
        return Path(node.dir, *self.parts)


@dataclass
class KubeNode:
    mode: str
    dir: Path
    docker: Any = None   # docker.DockerClient on the node's engine
    holder: subprocess.Popen[bytes] | None = None
    netns: str = ""
    kubelet: subprocess.Popen[bytes] | None = None
    containerd: subprocess.Popen[bytes] | None = None
    timings: dict[str, float | int] = field(default_factory=dict)  # seconds, or counts
    broken: str = ""  # why pods did not come up: later steps fail at once
    sysctls_before: dict[str, str] = field(default_factory=dict)
    node_paths_before: dict[str, bool] = field(default_factory=dict)

    # ---- paths: all under the node's directory --------------------------------------------

    engine_dir = Below("docker")
    ctrd_dir = Below("ctrd")
    ctrd_socket = Below("ctrd", "ctrd.sock")
    kubelet_dir = Below("kubelet")
    manifests = Below("kubelet", "manifests")
    cni_bin = Below("cni", "bin")
    cni_conf = Below("cni", "net.d")
    state_dir = Below("state")
    daemon_dir = Below("daemon")
    kubelet_log = Below("kubelet", "kubelet.log")
    plugin_log = Below("plugin.log")

    @property
    def docker_host(self) -> str:
        return f"unix://{self.engine_dir}/docker.sock"

    # ---- running things inside -------------------------------------------------------------

    def in_mounts(self, *cmd: str) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", *cmd]

    def in_node(self, *cmd: str) -> list[str]:
        """cmd in the node's mount and network namespaces."""
        return self.in_mounts("nsenter", f"--net=/run/netns/{self.netns}", "--", *cmd)

    def run(self, cmd: list[str], timeout: float = 60, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, env=env)
        if check and proc.returncode != 0:
            raise NodeError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                            f"{proc.stderr.strip()[-1500:]}")
        return proc

    def timed(self, label: str, fn: Callable[[], T]) -> T:
        t0 = time.monotonic()
        try:
            return fn()
        finally:
            self.timings[label] = round(time.monotonic() - t0, 2)

    def ctr(self, *args: str, check: bool = True) -> str:
        return self.run(["ctr", "-a", str(self.ctrd_socket), "-n", "k8s.io", *args],
                        check=check).stdout

    # ---- start -----------------------------------------------------------------------------

    def start(self, kubelet_bin: str) -> None:
        self.sysctls_before = read_sysctls()
        self.node_paths_before = {p: os.path.lexists(p) for p in NODE_PATHS}
        self.timed("mount namespace", self._start_mount_namespace)
        self.timed("dockerd", self._start_engine)
        self.timed("cni2cnm install", self._install_plugin)
        if self.mode == "containerd":
            self.timed("containerd", self._start_containerd)
        self.timed("kubelet", lambda: self._start_kubelet(kubelet_bin))

    def _start_mount_namespace(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        own = os.readlink("/proc/self/ns/mnt")
        wait_for("the node's mount namespace",
                 lambda: os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != own, 10, 0.02)
        sysdir = self.dir / "sysctl"
        sysdir.mkdir()
        script = ["set -e"]
        for tree in PRIVATE_TREES:
            script.append(f"mount -t tmpfs -o mode=0755 c2k {tree}")
        for name in KUBELET_SYSCTLS:
            private = sysdir / name.replace("/", ".")
            private.write_text(self.sysctls_before[name] + "\n")
            script.append(f"mount --bind {private} /proc/sys/{name}")
        self.run(self.in_mounts("sh", "-c", "\n".join(script)))

    @property
    def runc_wrapper(self) -> Path:
        return self.dir / "runc"

    def _write_runc_wrapper(self) -> None:
        """runc cannot set oom_score_adj -998 (what the CRI and the dockershim ask for pause
        containers) without CAP_SYS_RESOURCE on this machine kind: the wrapper clamps negative
        values to 0 in the bundle's config.json.  Both containerd and dockerd run it."""
        self.runc_wrapper.write_text(
            "#!/bin/sh\n"
            'prev=""\n'
            'for a in "$@"; do\n'
            '  case $prev in --bundle|-b) sed -i \'s/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/\''
            ' "$a/config.json" 2>/dev/null;; esac\n'
            '  prev=$a\n'
            "done\n"
            'exec /usr/sbin/runc "$@"\n')
        self.runc_wrapper.chmod(0o755)

    def _start_engine(self) -> None:
        import docker

        self._write_runc_wrapper()
        env = {**os.environ, "C2C_ENGINE": os.environ.get("C2C_ENGINE", "20.10"),
               "C2C_DOCKERD_ARGS": f"--add-runtime c2k-runc={self.runc_wrapper} "
                                   "--default-runtime c2k-runc"}
        host = self.run(self.in_mounts("bash", str(SCRIPTS / "dockerd.sh"), "start",
                                       str(self.engine_dir)), timeout=120, env=env).stdout
        assert host.strip() == self.docker_host, host
        self.netns = (self.engine_dir / "netns").read_text().strip()
        self.run(["bash", str(SCRIPTS / "images.sh"), self.docker_host], timeout=300)
        self.docker = docker.DockerClient(base_url=self.docker_host, version="auto",
                                          timeout=60)
        self.docker.networks.create(
            DOCKER_NETWORK, driver="bridge",
            ipam=docker.types.IPAMConfig(pool_configs=[
                docker.types.IPAMPool(subnet=POD_SUBNET)]))

    def _install_plugin(self) -> None:
        from pluginrun import plugin_executable

        for d in (self.cni_bin, self.cni_conf):
            d.mkdir(parents=True)
        self.daemon_dir.mkdir(mode=0o700)
        self.run([plugin_executable(), "install", "--bin-dir", str(self.cni_bin),
                  "--conf-dir", str(self.cni_conf), "--state-dir", str(self.state_dir),
                  "--network", DOCKER_NETWORK, "--daemon-socket",
                  str(self.daemon_dir / "d.sock")],
                 env={**os.environ, "DOCKER_HOST": self.docker_host})
        shutil.copy(REFERENCE_PLUGINS / "loopback", self.cni_bin / "loopback")
        [conflist] = list(self.cni_conf.glob("*.conflist"))
        conf = json.loads(conflist.read_text())
        conf["name"] = CNI_NETWORK
        # kubelet 1.20's dockershim links libcni 0.8: results up to CNI 0.4.0.
        conf["cniVersion"] = CNI_VERSIONS[self.mode]
        # The node's settings (README "Kubernetes"): the engine, the daemon on a socket of
        # this node's own (started on demand by the plugin, as on a default install).
        conf["plugins"][0].update({
            "network": DOCKER_NETWORK, "dockerHost": self.docker_host,
            "stateDir": str(self.state_dir), "sandboxImage": PAUSE_IMAGE,
            "daemon": "auto", "daemonSocket": str(self.daemon_dir / "d.sock"),
            "logFile": str(self.plugin_log), "logLevel": "info",
        })
        conflist.write_text(json.dumps(conf, indent=2))

    def _start_containerd(self) -> None:
        d = self.ctrd_dir
        for sub in ("root", "state", "opt"):
            (d / sub).mkdir(parents=True)
        wrapper = self.runc_wrapper
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (d / "config.toml").write_text(f"""version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{self.ctrd_socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[{cri}]
  sandbox_image = "docker.io/{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{wrapper}"
  Root = "{d}/runc-root"
[{cri}.cni]
  bin_dir = "{self.cni_bin}"
  conf_dir = "{self.cni_conf}"
""")
        log = open(d / "containerd.log", "ab")  # noqa: SIM115 - the child keeps it
        self.containerd = subprocess.Popen(
            self.in_node("containerd", "--config", str(d / "config.toml")),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=runtime_env(),
            start_new_session=True)
        log.close()
        wait_for("containerd's socket", lambda: self.run(
            ["ctr", "-a", str(self.ctrd_socket), "version"], check=False).returncode == 0, 30)
        tarball = self.dir / "images.tar"
        with open(tarball, "wb") as f:
            for chunk in self.docker.images.get(BUSYBOX_IMAGE).save(named=True):
                f.write(chunk)
        self.ctr("images", "import", str(tarball))
        with open(tarball, "wb") as f:
            for chunk in self.docker.images.get(PAUSE_IMAGE).save(named=True):
                f.write(chunk)
        self.ctr("images", "import", str(tarball))
        tarball.unlink()

    def _start_kubelet(self, kubelet_bin: str) -> None:
        k = self.kubelet_dir
        for sub in ("root", "certs", "plugins", "manifests", "dockershim"):
            (k / sub).mkdir(parents=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "staticPodPath": str(self.manifests),
            "fileCheckFrequency": "1s",
            "syncFrequency": "10s",
            "address": "127.0.0.1",
            "readOnlyPort": READ_ONLY_PORT,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "oomScoreAdj": 0,
            "hairpinMode": "none",
            "resolvConf": "",
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%",
                             "imagefs.available": "0%", "nodefs.inodesFree": "0%"},
        }
        (k / "config.json").write_text(json.dumps(config))
        args = [kubelet_bin, "--config", str(k / "config.json"), "--root-dir", str(k / "root"),
                "--cert-dir", str(k / "certs"), "--volume-plugin-dir", str(k / "plugins"),
                "--hostname-override", NODE_NAME, "--pod-infra-container-image", PAUSE_IMAGE,
                "--logtostderr", "--v", "2"]
        if self.mode == "containerd":
            args += ["--container-runtime", "remote", "--container-runtime-endpoint",
                     f"unix://{self.ctrd_socket}", "--image-service-endpoint",
                     f"unix://{self.ctrd_socket}"]
        else:
            args += ["--container-runtime", "docker", "--docker-endpoint", self.docker_host,
                     "--container-runtime-endpoint", f"unix://{k}/dockershim.sock",
                     "--experimental-dockershim-root-directory", str(k / "dockershim"),
                     "--network-plugin", "cni", "--cni-bin-dir", str(self.cni_bin),
                     "--cni-conf-dir", str(self.cni_conf),
                     "--cni-cache-dir", str(k / "cni-cache")]
        log = open(self.kubelet_log, "ab")  # noqa: SIM115 - the child keeps it
        self.kubelet = subprocess.Popen(self.in_node(*args), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, env=runtime_env(),
                                        start_new_session=True)
        log.close()
        try:
            wait_for("the kubelet's read-only port", lambda: self.pods_json() is not None, 60)
        except NodeError as exc:
            raise NodeError(f"{exc}; kubelet log: {tail(self.kubelet_log, 3000)}") from None

    # ---- the kubelet's view ----------------------------------------------------------------

    def pods_json(self) -> dict[str, Any] | None:
        get = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
               f"'http://127.0.0.1:{READ_ONLY_PORT}/pods', timeout=5).read().decode())")
        proc = self.run(self.in_node(sys.executable, "-I", "-c", get), check=False, timeout=20)
        if proc.returncode != 0:
            self.check_alive()
            return None
        return json.loads(proc.stdout)

    def pods(self) -> dict[str, Pod]:
        doc = self.pods_json() or {"items": []}
        out = {}
        for item in doc.get("items") or []:
            name = item["metadata"]["name"].removesuffix(f"-{NODE_NAME}")
            st = item.get("status") or {}
            cs = (st.get("containerStatuses") or [{}])[0]
            running = "running" in (cs.get("state") or {})
            out[name] = Pod(name=name, phase=st.get("phase", "") if running else "NotRunning",
                            ip=st.get("podIP", ""), container_id=cs.get("containerID", ""),
                            uid=item["metadata"].get("uid", ""))
        return out

    def check_alive(self) -> None:
        for label, proc, log in (("kubelet", self.kubelet, self.kubelet_dir / "kubelet.log"),
                                 ("containerd", self.containerd,
                                  self.ctrd_dir / "containerd.log")):
            if proc is not None and proc.poll() is not None:
                raise NodeError(f"the {label} exited ({proc.returncode}): "
                                f"{tail(log)}")

    def apply(self, *names: str, stubborn: bool = False) -> None:
        for name in names:
            tmp = self.manifests / f".{name}.json"
            tmp.write_text(json.dumps(manifest(name, stubborn)))
            tmp.rename(self.manifests / f"{name}.json")  # the kubelet ignores dotfiles

    def remove(self, *names: str) -> None:
        for name in names:
            (self.manifests / f"{name}.json").unlink(missing_ok=True)

    def wait_running(self, *names: str, timeout: float = 90.0,
                     not_container: dict[str, str] | None = None) -> dict[str, Pod]:
        """Until every pod is Running with an address (and, per pod in not_container, with
        another app container than the one given)."""
        not_container = not_container or {}

        def ready() -> dict[str, Pod] | None:
            pods = self.pods()
            for n in names:
                p = pods.get(n)
                if p is None or p.phase != "Running" or not p.ip:
                    return None
                if not_container.get(n) == p.container_id:
                    return None
            return pods
        if self.broken:
            raise NodeError(f"the node is broken since an earlier step: {self.broken[:300]}")
        try:
            return wait_for(f"pods {', '.join(names)} Running", ready, timeout, 0.5)
        except NodeError as exc:
            self.broken = str(exc)
            raise NodeError(f"{exc}; kubelet says {self.pods()}; kubelet log: "
                            f"{tail(self.kubelet_log, 3000)}; plugin log: "
                            f"{tail(self.plugin_log, 2000)}") from None

    def wait_gone(self, *names: str, timeout: float = 90.0) -> None:
        wait_for(f"pods {', '.join(names)} gone",
                 lambda: not set(names) & set(self.pods()), timeout, 0.5)

    # ---- the runtime's view ----------------------------------------------------------------

    def app_pid(self, pod: Pod) -> int:
        """The PID of the pod's app container (it shares the pod's network namespace)."""
        kind, _, cid = pod.container_id.partition("://")
        if kind == "docker":
            return int(self.docker.containers.get(cid).attrs["State"]["Pid"])
        for line in self.ctr("tasks", "ls").splitlines()[1:]:
            task, pid, *_ = line.split()
            if task == cid:
                return int(pid)
        raise NodeError(f"no containerd task for {pod}")

    def in_pod(self, pod: Pod, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return self.run(["nsenter", "-t", str(self.app_pid(pod)), "-n", "--", *cmd],
                        check=False, timeout=timeout)

    def pod_addresses(self, pod: Pod) -> list[str]:
        """IPv4 addresses of the pod's namespace, except loopback."""
        out = self.in_pod(pod, "ip", "-4", "-o", "addr", "show").stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines()
                if line.split()[1] != "lo"]

    def sandboxes(self) -> list[str]:
        """IDs of the runtime's pod sandboxes that run (pause containers)."""
        if self.mode == "dockershim":
            return [c.id for c in self.docker.containers.list(
                filters={"label": "io.kubernetes.docker.type=podsandbox"})]
        ids = self.ctr("containers", "ls", "-q",
                       'labels."io.cri-containerd.kind"==sandbox').split()
        running = {line.split()[0] for line in self.ctr("tasks", "ls").splitlines()[1:]
                   if line.split()[-1] == "RUNNING"}
        return [i for i in ids if i in running]

    def sandbox_of(self, pod: Pod) -> str:
        label = f"io.kubernetes.pod.uid={pod.uid}"
        if self.mode == "dockershim":
            [c] = self.docker.containers.list(filters={
                "label": ["io.kubernetes.docker.type=podsandbox", label]})
            return str(c.id)
        ids = self.ctr("containers", "ls", "-q",
                       'labels."io.cri-containerd.kind"==sandbox,'
                       f'labels."io.kubernetes.pod.uid"=={pod.uid}').split()
        live = [i for i in ids if i in self.sandboxes()]
        assert len(live) == 1, f"sandboxes of {pod.name}: {ids}, running {live}"
        return live[0]

    def kill_sandbox(self, pod: Pod) -> str:
        sid = self.sandbox_of(pod)
        if self.mode == "dockershim":
            self.docker.containers.get(sid).kill()
        else:
            self.ctr("tasks", "kill", "-s", "SIGKILL", sid)
        return sid

    # ---- the engine and the plugin ---------------------------------------------------------

    def records(self) -> list[Any]:
        from cni2cnm.store import Store

        if not (self.state_dir / "attachments.db").exists():
            return []
        with Store(str(self.state_dir)) as store:
            return list(store.list())

    def endpoints(self) -> dict[str, str]:
        """Container name -> IPv4 address of every endpoint on the Docker network."""
        net = self.docker.networks.get(DOCKER_NETWORK)
        net.reload()
        return {ep["Name"]: ep["IPv4Address"].split("/")[0]
                for ep in (net.attrs.get("Containers") or {}).values()}

    def proxy_sandboxes(self) -> list[Any]:
        return self.docker.containers.list(all=True,
                                           filters={"label": "io.cni2cnm.sandbox=true"})

    def engine_links(self) -> list[str]:
        """Interfaces in the engine's namespace other than lo and bridges."""
        out = self.run(self.in_node("ip", "-o", "link", "show")).stdout
        names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
        return [n for n in names if n != "lo" and not n.startswith(("docker", "br-"))]

    def netns_files(self) -> list[str]:
        out = self.run(self.in_mounts("ls", "/run/netns")).stdout.split()
        return [n for n in out if n != self.netns]

    def stop_engine(self) -> None:
        """dockerd gets SIGTERM (live-restore off: it stops every container) and is gone."""
        pid = int((self.engine_dir / "dockerd.pid").read_text())
        stop_pid(pid, 60)

    def start_engine(self) -> None:
        self.run(self.in_mounts("bash", str(SCRIPTS / "dockerd.sh"), "start",
                                str(self.engine_dir)), timeout=120)

    # ---- close -----------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop everything by PID, remove the directory; return what was found left over."""
        problems: list[str] = []

        def attempt(what: str, step: Callable[[], object]) -> None:
            """One step of the teardown: a failure is reported, and the next steps still run."""
            try:
                step()
            except Exception as e:
                problems.append(f"{what}: {e!r}")

        def stop(proc: subprocess.Popen[Any] | None, timeout: float) -> None:
            if proc is not None:
                stop_pid(proc.pid, timeout)
                proc.wait(10)

        attempt("kubelet", lambda: stop(self.kubelet, 30))
        if self.containerd is not None:
            attempt("containerd tasks", self._remove_containerd_tasks)
            attempt("containerd", lambda: stop(self.containerd, 30))
            for pid in processes_under(str(self.ctrd_dir)):  # shims
                attempt(f"shim {pid}", lambda pid=pid: stop_pid(pid, 10))
        for pid in processes_under(str(self.daemon_dir)):  # the plugin's daemon
            attempt(f"daemon {pid}", lambda pid=pid: stop_pid(pid, 15))
        if self.docker is not None:
            attempt("docker client", self.docker.close)
        if self.holder is not None:
            if self.netns:
                attempt("dockerd", lambda: self.run(
                    self.in_mounts("bash", str(SCRIPTS / "dockerd.sh"), "stop",
                                   str(self.engine_dir)), timeout=180, check=False))
            attempt("namespace holder", lambda: stop(self.holder, 5))
        left = processes_under(str(self.dir))
        if left:
            problems.append(f"processes left: {left}")
            for pid in left:
                stop_pid(pid, 5)
        mounts = unmount_under(self.dir)
        if mounts:
            problems.append(f"mounts left: {mounts}")
        if self.netns and Path("/run/netns", self.netns).exists():
            problems.append(f"netns {self.netns} left on the node")
            subprocess.run(["ip", "netns", "delete", self.netns], check=False)
        problems += self.node_changes()
        keep = os.environ.get("C2C_KUBELET_LOGS", "")
        if keep:  # the components' logs, for a failure to be read afterwards
            dest = Path(keep, self.mode)
            dest.mkdir(parents=True, exist_ok=True)
            for log in (self.kubelet_log, self.plugin_log, self.ctrd_dir / "containerd.log",
                        self.engine_dir / "dockerd.log"):
                if log.exists():
                    shutil.copy(log, dest / log.name)
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def _remove_containerd_tasks(self) -> None:
        with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
            for cid in self.ctr("containers", "ls", "-q").split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
                self.ctr("tasks", "delete", "-f", cid, check=False)
                self.ctr("containers", "delete", cid, check=False)

    def node_changes(self) -> list[str]:
        problems = []
        now = read_sysctls()
        for name, value in self.sysctls_before.items():
            if now.get(name) != value:
                problems.append(f"sysctl {name} changed: {value} -> {now.get(name)}")
        for p, existed in self.node_paths_before.items():
            if os.path.lexists(p) and not existed:
                problems.append(f"{p} appeared on the node")
        return problems


def runtime_env() -> dict[str, str]:
    """What a node's service manager gives the kubelet and containerd (not the tests' own
    variables such as CNI2CNM_DAEMON)."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root"}


def read_sysctls() -> dict[str, str]:
    return {n: Path("/proc/sys", n).read_text().strip() for n in KUBELET_SYSCTLS}


def tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path} unreadable)"


@contextlib.contextmanager
def kube_node(mode: str, kubelet_bin: str) -> Iterator[KubeNode]:
    d = Path(tempfile.mkdtemp(prefix="c2k.", dir="/tmp"))
    node = KubeNode(mode=mode, dir=d)
    problems: list[str] = []
    try:
        node.start(kubelet_bin)
        yield node
    finally:
        problems = node.close()
    if problems:
        raise NodeError(f"the {mode} node left: {'; '.join(problems)}")
