"""`cni2cnm doctor`: is this node ready for cni2cnm? One check per line: OK, WARN or FAIL,
what was found and, when not OK, how to fix it. FAIL means ADD would fail (or the runtime
would not find the plugin); WARN means a feature is missing or something looks risky.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from cni2cnm import PLUGIN_TYPE, safedirs
from cni2cnm.cni.version import SUPPORTED_VERSIONS
from cni2cnm.daemon.wire import DEFAULT_SOCKET
from cni2cnm.engine import (
    API_IFNAME,
    API_MAC_ON_CONNECT,
    MIN_API,
    Engine,
    EngineError,
    redact,
)
from cni2cnm.ops import OpError, trust
from cni2cnm.ops.conflist import validate
from cni2cnm.ops.files import read_json_object
from cni2cnm.store import Store

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CONF_EXTENSIONS = (".conf", ".conflist", ".json")  # what libcni's ConfFiles reads
VERSION_TIMEOUT = 10.0
SLOW_VERSION = 2.0  # seconds; cri-dockerd calls VERSION every 5 s


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "message": self.message,
                "fix": self.fix}


def _v(api: tuple[int, int]) -> str:
    return f"{api[0]}.{api[1]}"


def run_checks(engine: Engine, state_dir: str, bin_dir: str, conf_dir: str,
               network: str | None) -> list[Check]:
    checks: list[Check] = []
    checks.append(check_root())
    checks += check_engine(engine, network)
    checks.append(check_state_dir(state_dir))
    checks.append(check_bin(bin_dir))
    checks += check_conf_dir(conf_dir, network, engine.base_url)
    checks += check_sandbox_image(engine, conf_dir)
    trusted = check_trust(bin_dir)
    checks.append(trusted)
    if trusted.status == FAIL and os.path.exists(os.path.join(bin_dir, PLUGIN_TYPE)):
        checks.append(Check("version", FAIL, "VERSION through the plugin not run: it would "
                            "run code others than root can change", trusted.fix))
    else:
        checks.append(check_version_call(bin_dir))
    checks.append(check_daemon(os.environ.get("CNI2CNM_DAEMON_SOCKET", DEFAULT_SOCKET)))
    return checks


def check_daemon(socket_path: str) -> Check:
    """The warm daemon: never a failure (the plugin runs requests in-process without it)."""
    from cni2cnm.daemon import status

    if not socket_path:
        return Check("daemon", WARN, "daemon disabled (CNI2CNM_DAEMON_SOCKET is empty): every "
                     "request runs in-process", "unset CNI2CNM_DAEMON_SOCKET")
    st = status.probe(socket_path)
    if not st.running:
        return Check("daemon", OK, f"no daemon on {socket_path} ({st.note}): the plugin starts "
                     "one on the next request (config key daemon: auto), or systemd does "
                     "(cni2cnm.socket)")
    if not st.current:
        fix = {"on-demand": "nothing: the next request replaces it",
               "systemd": "systemctl restart cni2cnm.service"}.get(st.started,
                                                                   "restart `cni2cnm serve`")
        return Check("daemon", WARN, f"daemon {st.describe()}: requests run in-process", fix)
    return Check("daemon", OK, f"daemon {st.describe()}") if not st.metrics else \
        check_metrics(st)


def check_metrics(st: Any) -> Check:
    import urllib.request

    url = f"http://{st.metrics}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            ok = r.status == 200
    except OSError as e:
        return Check("daemon", WARN, f"daemon {st.describe()}; {url} does not answer: {e}",
                     "check --metrics-address and the firewall")
    if not ok:
        return Check("daemon", WARN, f"daemon {st.describe()}; {url} reports it unhealthy")
    return Check("daemon", OK, f"daemon {st.describe()}; {url} answers ok")


def check_root() -> Check:
    if os.geteuid() == 0:
        return Check("root", OK, "running as root, as runtimes run the plugin")
    return Check("root", WARN, f"running as uid {os.geteuid()}: namespaces and the state "
                 "directory may not be readable, so some checks can be wrong",
                 "run cni2cnm doctor as root")


def check_engine(engine: Engine, network: str | None) -> list[Check]:
    host = engine.shown
    try:
        info = engine.version()
        api = engine.api_version()
    except EngineError as e:
        return [Check("engine", FAIL, f"no Docker engine answers at {host}: {e.explanation}",
                      "start dockerd, or point --docker-host / DOCKER_HOST (and the conflist's "
                      "dockerHost) at the engine")]
    server_api = str(info.get("ApiVersion") or "?")
    out = [Check("engine", OK, f"{host} answers: Docker {info.get('Version', '?')}, API "
                 f"{server_api}")]
    if api >= MIN_API:
        out.append(Check("api", OK, f"API {_v(api)} >= {_v(MIN_API)}"))
    else:
        out.append(Check("api", FAIL, f"API {_v(api)} is older than {_v(MIN_API)}: the plugin "
                         "refuses this engine (STATUS answers 50)",
                         "upgrade to Docker 19.03 or newer"))
    if api >= API_IFNAME:
        out.append(Check("ifname", OK, f"interface naming: API {_v(api)} >= {_v(API_IFNAME)}, "
                         "CNI_IFNAME is honoured"))
    else:
        out.append(Check("ifname", WARN, f"interface naming: API {_v(api)} < {_v(API_IFNAME)} "
                         "(Docker 28.0): Docker names interfaces eth0, eth1, ... in connect "
                         "order; a CNI_IFNAME other than ethN is refused (code 102)",
                         "upgrade to Docker 28.0+ for other interface names; eth0 for a "
                         "pod's first network works as it is"))
    if api >= API_MAC_ON_CONNECT:
        out.append(Check("mac", OK, f"MAC on connect: API {_v(api)} >= "
                         f"{_v(API_MAC_ON_CONNECT)}, requested MACs are honoured"))
    else:
        out.append(Check("mac", WARN, f"MAC on connect: API {_v(api)} < "
                         f"{_v(API_MAC_ON_CONNECT)} (Docker 29.3): the engine ignores MACs "
                         "requested on connect, so a container-mode ADD with runtimeConfig.mac "
                         "or MAC= fails (code 102); proxy mode sets the MAC at the sandbox's "
                         "create, which Docker 28 honours and 20.10 does not",
                         "upgrade to Docker 29.3+, or request MAC addresses in proxy mode only"))
    role = _swarm_role(engine)
    if role:
        out.append(Check("swarm", OK, f"this engine is a swarm {role}: attachable overlay "
                         "networks work here"))
    if network:
        out.append(check_network(engine, network, role))
    return out


def _swarm_role(engine: Engine) -> str | None:
    try:
        return engine.swarm_role()
    except EngineError:
        return None


def check_network(engine: Engine, ref: str, role: str | None = None) -> Check:
    try:
        net = engine.network(ref)
    except EngineError as e:
        return Check("network", FAIL, f"cannot inspect network {ref!r}: {e.explanation}", "")
    if net is None and role == "worker":
        return Check("network", WARN, f"network {ref!r} is not visible on this swarm worker: "
                     "swarm networks appear on a worker with its first local attachment, so "
                     "this is normal before the first ADD; whether it exists and is attachable "
                     "shows on a manager", f"on a manager: docker network inspect {ref}")
    if net is None:
        return Check("network", FAIL, f"Docker network {ref!r} does not exist on "
                     f"{engine.shown}", f"docker network create --subnet <CIDR> {ref}")
    subnets = ", ".join(s.subnet for s in net.subnets if s.subnet) or "none configured"
    what = f"network {net.name}: driver {net.driver}, scope {net.scope}, subnets {subnets}"
    if net.scope == "swarm" and not net.attachable:
        return Check("network", FAIL, f"{what}; not attachable: Docker refuses to connect "
                     "containers to it", "re-create it with --attachable")
    if not any(s.subnet for s in net.subnets):
        return Check("network", WARN, f"{what}: static addresses (--ip, runtimeConfig.ips) "
                     "are impossible", "create the network with --subnet for static addresses")
    return Check("network", OK, what)


def unsafe_state_dir(unsafe: safedirs.UnsafeDir) -> Check:
    what, _, fix = str(unsafe).partition(" Fix: ")
    return Check("state-dir", FAIL, f"{what}; the plugin refuses it (code 5)",
                 fix or "set stateDir / --state-dir to a root-owned directory")


def check_state_dir(state_dir: str) -> Check:
    store = Store(state_dir)
    marker = getattr(store, "marker", "")
    unsafe = safedirs.problem_of(state_dir)  # a link or a directory others can write on the way
    if os.path.isdir(state_dir):
        st = os.stat(state_dir)
        mode = st.st_mode & 0o777
        if st.st_uid != 0 or st.st_mode & 0o022:
            who = f"owned by uid {st.st_uid}" if st.st_uid != 0 else f"mode {mode:04o}"
            return Check("state-dir", FAIL, f"{state_dir} is {who}: others than root could "
                         "change what the plugin records and does as root, so it refuses the "
                         "directory (code 5)", f"chown root:root {state_dir} && chmod 700 "
                         f"{state_dir}")
        if unsafe is not None:
            return unsafe_state_dir(unsafe)
        if not os.access(state_dir, os.W_OK | os.X_OK):
            return Check("state-dir", FAIL, f"{state_dir} is not writable",
                         f"run as root, or chown/chmod {state_dir}")
        if marker and os.path.exists(marker) and not os.path.exists(store.path):
            return Check("state-dir", FAIL, f"{store.path} is missing but {marker} shows it "
                         "existed: the recorded attachments are lost and ADD refuses to run (DEL "
                         "detaches through the engine alone)",
                         f"restore {store.path}, or remove {marker} and run `cni2cnm gc`")
        if mode != 0o700:
            return Check("state-dir", WARN, f"{state_dir} has mode {mode:04o}; the plugin "
                         "creates it 0700 (it holds container IDs and lock files)",
                         f"chmod 700 {state_dir}")
        return Check("state-dir", OK, f"{state_dir} exists, mode 0700, writable")
    if unsafe is not None:
        return unsafe_state_dir(unsafe)
    if os.path.exists(state_dir):
        return Check("state-dir", FAIL, f"{state_dir} exists and is not a directory",
                     "remove it or set stateDir / --state-dir elsewhere")
    parent = os.path.dirname(os.path.abspath(state_dir))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
        return Check("state-dir", OK, f"{state_dir} does not exist yet; the first ADD creates "
                     f"it (0700) under {parent}")
    return Check("state-dir", FAIL, f"{state_dir} does not exist and {parent} is not writable",
                 f"run as root, or create {state_dir} with mode 0700")


def check_bin(bin_dir: str) -> Check:
    path = os.path.join(bin_dir, PLUGIN_TYPE)
    if not os.path.exists(path):
        return Check("bin", FAIL, f"{path} does not exist: runtimes cannot find the plugin",
                     f"cni2cnm install --bin-dir {bin_dir}")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return Check("bin", FAIL, f"{path} is not an executable file",
                     f"chmod 755 {path}, or cni2cnm install --bin-dir {bin_dir} --force")
    return Check("bin", OK, f"{path} is executable")


def _conf_files(conf_dir: str) -> list[str]:
    return sorted(os.path.join(conf_dir, n) for n in os.listdir(conf_dir)
                  if n.endswith(CONF_EXTENSIONS) and os.path.isfile(os.path.join(conf_dir, n)))


def _as_list(doc: dict[str, Any]) -> dict[str, Any]:
    """A .conf file as a one-plugin list, as libcni's ConfListFromConf makes it."""
    if "plugins" in doc:
        return doc
    return {"cniVersion": doc.get("cniVersion"), "name": doc.get("name"), "plugins": [doc]}


def check_conf_dir(conf_dir: str, network: str | None, docker_host: str = "") -> list[Check]:
    if not os.path.isdir(conf_dir):
        return [Check("conf", FAIL, f"{conf_dir} does not exist",
                      f"cni2cnm install --conf-dir {conf_dir} --network <docker network>")]
    try:
        files = _conf_files(conf_dir)
    except OSError as e:
        return [Check("conf", FAIL, f"cannot list {conf_dir}: {e.strerror}", "run as root")]
    out: list[Check] = []
    first_valid: str | None = None
    first_is_ours = False
    targets: list[str] = []
    for path in files:
        try:
            doc = _as_list(read_json_object(path))
        except OpError as e:
            out.append(Check("conf", WARN, f"{e}; runtimes skip it", f"fix or remove {path}"))
            continue
        plugins = doc.get("plugins")
        ours = [p for p in plugins if isinstance(p, dict) and p.get("type") == PLUGIN_TYPE
                ] if isinstance(plugins, list) else []
        try:
            parsed = validate(doc, path)
        except OpError as e:
            if ours:
                out.append(Check("conf", FAIL, f"{e}", f"regenerate it: cni2cnm conflist "
                                 f"<docker network> -o {path}"))
            continue
        if first_valid is None:
            first_valid, first_is_ours = path, bool(ours)
        for conf in parsed:
            if conf.type == PLUGIN_TYPE:
                targets.append(conf.docker_network)
                what = (f"{path}: network {conf.name!r} -> Docker network "
                        f"{conf.docker_network!r} (cniVersion {conf.cniVersion})")
                if docker_host and conf.dockerHost and conf.dockerHost != docker_host:
                    theirs = redact(conf.dockerHost)
                    out.append(Check("conf", WARN, f"{what}; its dockerHost is {theirs}, "
                                     f"these checks asked {redact(docker_host)}",
                                     f"cni2cnm doctor --docker-host {theirs}"))
                else:
                    out.append(Check("conf", OK, what))
    if not targets:
        out.append(Check("conf", FAIL, f"no valid config in {conf_dir} uses {PLUGIN_TYPE}",
                         f"cni2cnm install --conf-dir {conf_dir} --network <docker network>"))
    elif network and network not in targets:
        out.append(Check("conf", FAIL, f"no config in {conf_dir} attaches to Docker network "
                         f"{network!r} (found {', '.join(sorted(set(targets)))})",
                         f"cni2cnm install --conf-dir {conf_dir} --network {network}"))
    if targets and first_valid is not None and not first_is_ours:
        out.append(Check("conf", WARN, f"{first_valid} comes first: cri-dockerd, containerd and "
                         "CRI-O use only the first valid config file of the directory",
                         "rename the cni2cnm conflist to sort first (e.g. 00-...) if pods "
                         "should use it"))
    return out


def plugin_installation(path: str) -> trust.Installation | None:
    """The interpreter and package directory a plugin file `cni2cnm install` wrote runs
    (None when it is not such a file), with the sys.path that interpreter gives it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(64 << 10)
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.splitlines()
    python = package_dir = None
    if lines and lines[0].startswith("#!/bin/sh"):
        for line in lines:
            words = shlex.split(line) if line.startswith("exec ") else []
            if len(words) > 1:
                python = words[1]
    elif lines and lines[0].startswith("#!"):
        python = lines[0][2:].split()[0] if lines[0][2:].split() else None
        for line in lines:
            m = re.fullmatch(r"sys\.path\.insert\(0, (.+)\)", line.strip())
            if m:
                with contextlib.suppress(ValueError, SyntaxError):
                    package_dir = ast.literal_eval(m.group(1))
    if not python or not python.startswith("/"):
        return None
    if isinstance(package_dir, str):
        return trust.this_installation(python, package_dir)
    # `python -I -m cni2cnm`: this package if it is this interpreter, else whichever its
    # sys.path (checked in full) gives
    same = os.path.abspath(python) == os.path.abspath(sys.executable)
    return trust.this_installation(python, None if same else "")


def python_plugin(path: str) -> str:
    """The Python plugin file: `path`, or beside it when `path` is the static shim."""
    from cni2cnm.ops.install import ELF_MAGIC, SHIM_FALLBACK

    try:
        with open(path, "rb") as f:
            shim = f.read(len(ELF_MAGIC)) == ELF_MAGIC
    except OSError:
        return path
    return os.path.join(os.path.dirname(path), SHIM_FALLBACK) if shim else path


def check_trust(bin_dir: str) -> Check:
    """Only root can change the code the plugin runs as root (cni2cnm.ops.trust)."""
    path = python_plugin(os.path.join(bin_dir, PLUGIN_TYPE))
    if not os.path.exists(path):
        return Check("trust", WARN, f"{path} does not exist: nothing to check",
                     f"cni2cnm install --bin-dir {bin_dir}")
    inst = plugin_installation(path)
    if inst is None:
        return Check("trust", WARN, f"{path} was not written by `cni2cnm install`: cannot "
                     "tell which code it runs", f"cni2cnm install --bin-dir {bin_dir} --force")
    problems = trust.problems_of(inst)
    if problems:
        return Check("trust", FAIL, f"the plugin runs as root code that others than root can "
                     f"change: {trust.describe(problems)}", trust.fix(problems))
    what = ", ".join([inst.python, *([inst.package] if inst.package_dir else []),
                      *inst.site_dirs])
    if not inst.site_dirs:
        return Check("trust", WARN, f"only root can change {what}; the site-packages of "
                     f"{inst.python} can be checked only by doctor run with that interpreter",
                     f"{inst.python} -m cni2cnm doctor")
    return Check("trust", OK, f"only root can change the code the plugin runs: {what}")


def check_version_call(bin_dir: str) -> Check:
    path = os.path.join(bin_dir, PLUGIN_TYPE)
    if not os.access(path, os.X_OK):
        return Check("version", FAIL, f"cannot run {path}", f"cni2cnm install --bin-dir {bin_dir}")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": "VERSION", "CNI_PATH": bin_dir}
    start = time.monotonic()
    try:
        proc = subprocess.run([path], input=b'{"cniVersion":"1.0.0"}', env=env,
                              capture_output=True, timeout=VERSION_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return Check("version", FAIL, f"{path} did not answer VERSION within "
                     f"{VERSION_TIMEOUT:.0f} s", "check the interpreter the wrapper runs")
    except OSError as e:
        return Check("version", FAIL, f"cannot run {path}: {e.strerror}",
                     f"cni2cnm install --bin-dir {bin_dir} --force")
    took = time.monotonic() - start
    stderr = proc.stderr.decode(errors="replace").strip().splitlines()
    why = f" ({stderr[-1]})" if stderr else ""
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    if proc.returncode != 0 or not isinstance(doc, dict):
        return Check("version", FAIL, f"VERSION through {path} failed: exit "
                     f"{proc.returncode}{why}", f"cni2cnm install --bin-dir {bin_dir} --force")
    versions = doc.get("supportedVersions")
    if versions != list(SUPPORTED_VERSIONS) or doc.get("cniVersion") != "1.0.0":
        return Check("version", FAIL, f"VERSION through {path} answered {json.dumps(doc)}; "
                     f"expected cniVersion 1.0.0 and {list(SUPPORTED_VERSIONS)}",
                     "the installed plugin is another version: "
                     f"cni2cnm install --bin-dir {bin_dir} --force")
    message = (f"VERSION through {path}: {len(versions)} versions "
               f"({versions[0]} ... {versions[-1]}) in {took * 1000:.0f} ms")
    if took > SLOW_VERSION:
        return Check("version", WARN, message + "; runtimes call VERSION often (cri-dockerd "
                     "every 5 s)", "check the node's load and the interpreter's start-up")
    return Check("version", OK, message)


def check_sandbox_image(engine: Engine, conf_dir: str) -> list[Check]:
    """The proxy sandboxes' image (each cni2cnm config's `sandboxImage` that may make
    sandboxes, else the default) is on the engine: an ADD pulls a missing one, which fails
    on an engine without registry access."""
    from cni2cnm.plugin.config import DEFAULT_SANDBOX_IMAGE

    images: list[str] = []
    try:
        for path in _conf_files(conf_dir):
            with contextlib.suppress(OpError):
                images += [c.sandboxImage for c in validate(_as_list(read_json_object(path)),
                                                            path)
                           if c.type == PLUGIN_TYPE and c.mode != "container"]
    except OSError:
        pass  # check_conf_dir reports the directory
    out: list[Check] = []
    for image in dict.fromkeys(images or [DEFAULT_SANDBOX_IMAGE]):
        try:
            present = engine.has_image(image)
        except EngineError:
            return []  # check_engine already said the engine does not answer
        if present:
            out.append(Check("sandbox", OK, f"sandbox image {image} is on the engine"))
        else:
            out.append(Check("sandbox", WARN, f"sandbox image {image} is not on "
                             f"{engine.shown}: the first proxy-mode ADD pulls it, and that "
                             "pull fails when the engine has no registry access",
                             f"docker pull {image} (or docker load it from a saved tarball), "
                             "or set sandboxImage to an image the engine has"))
    return out
