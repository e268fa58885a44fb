"""The static shim (shim/cni2cnm-shim.c) as the plugin executable: built here by
scripts/shim.sh, run exactly as a runtime runs a plugin.

- Through a real `cni2cnm serve`: the same bytes and exit status as the Python plugin file
  (which forwards to the same daemon), for ADD/CHECK/STATUS/GC/DEL/VERSION in container and
  proxy mode, for errors, hostile environments and stdin.
- Against fake daemons written here (no hello, bad magic, another protocol or version, a
  daemon that dies after reading the request, a reply too big, a slow hello, a socket served
  by uid 65534): with the Python plugin beside it the request runs there, exactly as the
  Python plugin alone would run it; without, CNI error 11 (a DEL is kept for the daemon).
- A DEL kept while no daemon answered is finished by the daemon when it starts.
- `cni2cnm install --shim` places it and the Python plugin beside it; --uninstall removes
  both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from c2ctest import network_subnets, pause_container, unique_name
from daemonrun import Daemon, running_daemon, start_daemon
from pluginrun import Outcome, Plugin, cri_args, endpoint, plugin_executable, proc_netns

from cni2cnm import __version__
from cni2cnm.daemon import wire
from cni2cnm.ops.install import SHIM_FALLBACK, wrapper_text

# Runs every request both ways by itself: the daemon-mode pass skips it.
pytestmark = pytest.mark.own_modes

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/shim.sh's shim, built for this module (a build failure fails the tests)."""
    out = tmp_path_factory.mktemp("shim") / "cni2cnm-shim"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "shim.sh"), str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"scripts/shim.sh failed: {proc.stderr}"
    assert proc.stdout.strip() == str(out)
    return out


def bin_dir(root: Path, built: Path, python: bool) -> Path:
    """A CNI bin dir as `cni2cnm install --shim` makes it (`python`: with the Python plugin
    beside the shim), root's and 0755 all the way (the shim trusts nothing else)."""
    d = root / ("bin-py" if python else "bin")
    d.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    shutil.copy(built, d / "cni2cnm")
    (d / "cni2cnm").chmod(0o755)
    if python:
        (d / SHIM_FALLBACK).write_text(wrapper_text())
        (d / SHIM_FALLBACK).chmod(0o755)
    return d


@pytest.fixture
def shims(resources: Any, built: Path) -> dict[str, str]:
    root = resources.tmpdir()
    return {"python": str(bin_dir(root, built, True) / "cni2cnm"),
            "alone": str(bin_dir(root, built, False) / "cni2cnm")}


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with running_daemon() as d:
        yield d


def run(exe: str, env: dict[str, str], stdin: bytes = b"", timeout: float = 60
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([exe], input=stdin, env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, timeout=timeout, check=False)


# ---- what it is -----------------------------------------------------------------------------


def test_static_and_starts_in_about_a_millisecond(shims: dict[str, str]) -> None:
    ldd = subprocess.run(["ldd", shims["alone"]], capture_output=True, text=True, check=False)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr
    version = run(shims["alone"], {}, stdin=b"")
    assert version.returncode == 1  # no CNI_COMMAND, no Python: error 4, no traceback
    assert json.loads(version.stdout)["code"] == 4
    said = subprocess.run([shims["alone"], "--version"], capture_output=True, text=True,
                          check=True).stdout
    assert said == f"cni2cnm-shim {__version__} protocol {wire.PROTOCOL}\n"
    # 300 VERSION runs without Python and without a daemon, against /bin/true: the shim's own
    # start-up and answer, beside the cost of starting any process from here.
    env = {"CNI_COMMAND": "VERSION"}
    samples = {}
    for exe in (shims["alone"], "/bin/true"):
        t = []
        for _ in range(300):
            t0 = time.perf_counter()
            subprocess.run([exe], input=b'{"cniVersion":"1.0.0"}', env=env,
                           capture_output=True, check=True)
            t.append(time.perf_counter() - t0)
        samples[exe] = sorted(t)[len(t) // 2] * 1e3
    extra = samples[shims["alone"]] - samples["/bin/true"]
    print(f"shim VERSION median {samples[shims['alone']]:.2f} ms, /bin/true "
          f"{samples['/bin/true']:.2f} ms: {extra:.2f} ms more")
    assert extra < 3.0


# ---- through a real daemon: the same bytes as the Python plugin --------------------------------


def lifecycle(plugin: Plugin, exe: str, daemon: Daemon, cid: str, netns: str, args: str,
              conf: dict[str, Any]) -> tuple[list[tuple[int, str]], Outcome]:
    env = daemon.env
    add = plugin.run("ADD", cid, netns, cni_args=args, conf=conf, env=env, executable=exe)
    add.ok()
    outs = [
        add,
        plugin.run("CHECK", cid, netns, cni_args=args, conf=conf, prev=add.doc, env=env,
                   executable=exe),
        plugin.run("ADD", cid, netns, cni_args=args, conf=conf, env=env, executable=exe),
        plugin.run("STATUS", "", "", conf=plugin.conf(cniVersion="1.1.0"), env=env,
                   executable=exe),
        plugin.run("GC", "", "", conf=plugin.conf(cniVersion="1.1.0"), env=env,
                   executable=exe),
        plugin.run("VERSION", "", "", conf=conf, env=env, executable=exe),
        plugin.run("DEL", cid, netns, cni_args=args, conf=conf, prev=add.doc, env=env,
                   executable=exe),
        plugin.run("DEL", cid, netns, cni_args=args, conf=conf, prev=add.doc, env=env,
                   executable=exe),
    ]
    for o in outs:
        assert "in-process" not in o.stderr, o.stderr
    return [(o.rc, o.stdout) for o in outs], add


@pytest.mark.parametrize("mode", ["container", "proxy"])
def test_lifecycle_prints_what_the_python_plugin_prints(
        mode: str, daemon: Daemon, plugin: Plugin, net: Any, resources: Any, images: Any,
        shims: dict[str, str]) -> None:
    """The same pod (static address, container ID, namespace path) through the daemon, once
    by the Python plugin file and once by each shim: the same bytes, but for the MAC the
    engine picked (ADD prints it; engines from API 1.48 pick it at random)."""
    prefix = network_subnets(net)[0].rsplit(".", 1)[0]
    conf = plugin.conf(capabilities={"ips": True}, runtimeConfig={"ips": [f"{prefix}.78/24"]},
                       mode=mode)
    cid, ns = unique_name("cni"), unique_name("ns")
    answers = {}
    for name, exe in (("python", plugin_executable()), ("shim+python", shims["python"]),
                      ("shim", shims["alone"])):
        pod = pause_container(resources, images)
        if mode == "container":
            subprocess.run(["ip", "netns", "attach", ns, str(pod.attrs["State"]["Pid"])],
                           check=True)
        else:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        resources.add_cleanup(lambda: subprocess.run(["ip", "netns", "delete", ns],
                                                     capture_output=True, check=False))
        netns = f"/run/netns/{ns}"
        outs, add = lifecycle(plugin, exe, daemon, cid, netns, cri_args(pod.id), conf)
        mac = add.doc["interfaces"][0]["mac"]
        answers[name] = [(rc, out.replace(mac, "<mac>")) for rc, out in outs]
        subprocess.run(["ip", "netns", "delete", ns], check=True)
    assert answers["shim"] == answers["python"]
    assert answers["shim+python"] == answers["python"]
    assert [rc for rc, _ in answers["shim"]] == [0, 0, 1, 0, 0, 0, 0, 0]
    assert plugin.records() == []


def test_errors_and_hostile_input_print_what_the_python_plugin_prints(
        daemon: Daemon, plugin: Plugin, resources: Any, images: Any,
        shims: dict[str, str]) -> None:
    pod = pause_container(resources, images)
    netns, args = proc_netns(pod), cri_args(pod.id)
    big_env = {f"CNI2CNM_X{i}": "y" * 100 for i in range(800)}  # > 64 KiB: not forwarded
    cases: list[tuple[str, dict[str, Any]]] = [
        ("unknown network", {"conf": plugin.conf(network="c2ct-no-such-network")}),
        ("missing CNI_NETNS", {"netns": ""}),
        ("unsupported version", {"conf": plugin.conf(cniVersion="9.9.9")}),
        ("CHECK without prevResult", {"command": "CHECK"}),
        ("GC on 1.0.0", {"command": "GC"}),
        ("engine unreachable", {"env": {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}}),
        ("non-UTF-8 CNI_ARGS", {"cni_args": "X\udcfe=\udcff"}),
        ("empty stdin", {"stdin": b""}),
        ("binary stdin", {"stdin": bytes(range(256)) * 4}),
        ("stdin not an object", {"stdin": b"[1, 2]"}),
        ("escaped keys", {"stdin": json.dumps(plugin.conf(network="c2ct-none")).replace(
            "network", "netw\\u006frk").encode()}),
        ("stdin over 1 MiB", {"stdin": b" " * (wire.MAX_STDIN + 5) + b"{}"}),
        ("environment over 64 KiB", {"env": big_env,
                                     "conf": plugin.conf(network="c2ct-no-such-network")}),
        ("unknown command", {"command": "FROB"}),
    ]
    for name, kw in cases:
        command = kw.pop("command", "ADD")
        kw.setdefault("netns", netns)
        kw.setdefault("cni_args", args)
        env = {**kw.pop("env", {}), **daemon.env}
        python = plugin.run(command, pod.id, env=env, **kw)
        shim = plugin.run(command, pod.id, env=env, executable=shims["python"], **kw)
        assert (shim.rc, shim.stdout) == (python.rc, python.stdout), name
        assert python.rc == 1 and python.doc["code"], name
    assert plugin.records() == []


# ---- fake daemons ---------------------------------------------------------------------------


class FakeDaemon:
    """A unix socket server in this process: `behave(conn)` handles each connection."""

    def __init__(self, directory: Path, behave: Callable[[socket.socket], None]) -> None:
        self.path = directory / "d.sock"
        self.behave = behave
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(self.path))
        self.listener.listen(16)
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, contextlib.suppress(OSError):
                self.behave(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(10)


def hello(version: str = __version__, protocol: int = wire.PROTOCOL) -> bytes:
    body = b"\0".join([b"cni2cnm", str(protocol).encode(), version.encode(), b"1", b"/x",
                       b"manual", b""])
    return struct.pack(">I", len(body)) + body


def no_hello(conn: socket.socket) -> None:
    conn.recv(1)  # until the client gives up


def slow_hello(conn: socket.socket) -> None:
    time.sleep(2.5)
    conn.sendall(hello())


def bad_magic(conn: socket.socket) -> None:
    conn.sendall(struct.pack(">I", 12) + b"nginx\0hello!")


def other_protocol(conn: socket.socket) -> None:
    conn.sendall(hello(protocol=2))


def other_version(conn: socket.socket) -> None:
    conn.sendall(hello(version="0.0.9"))


def dies_after_request(conn: socket.socket) -> None:
    conn.sendall(hello())
    wire.recv(conn)


def huge_reply(conn: socket.socket) -> None:
    conn.sendall(hello())
    wire.recv(conn)
    conn.sendall(struct.pack(">I", wire.MAX_FRAME + 1) + b"\0" * 4096)


def verbatim_reply(conn: socket.socket) -> None:
    conn.sendall(hello())
    wire.recv(conn)
    body = struct.pack(">BI", 7, 6) + b"\xff\0out\n" + b"log \xfe\n"
    conn.sendall(struct.pack(">I", len(body)) + body)


FAKES = {"no_hello": no_hello, "slow_hello": slow_hello, "bad_magic": bad_magic,
         "other_protocol": other_protocol, "other_version": other_version,
         "dies_after_request": dies_after_request, "huge_reply": huge_reply}


@pytest.fixture
def fake_dir(resources: Any) -> Path:
    d = resources.tmpdir() / "run"
    d.mkdir(mode=0o700)
    return d


@pytest.mark.parametrize("fake", list(FAKES))
def test_fake_daemon_falls_back_to_the_python_plugin(
        fake: str, fake_dir: Path, plugin: Plugin, resources: Any, images: Any,
        shims: dict[str, str]) -> None:
    """The request runs in the Python plugin beside the shim, whose own client meets the same
    daemon and runs it in-process: the same answer as the Python plugin alone."""
    server = FakeDaemon(fake_dir, FAKES[fake])
    try:
        env = {wire.SOCKET_ENV: str(server.path), wire.MODE_ENV: "manual"}
        pod = pause_container(resources, images)
        netns, args = proc_netns(pod), cri_args(pod.id)
        conf = plugin.conf(network="c2ct-no-such-network")
        python = plugin.run("ADD", pod.id, netns, cni_args=args, conf=conf, env=env)
        t0 = time.monotonic()
        shim = plugin.run("ADD", pod.id, netns, cni_args=args, conf=conf, env=env,
                          executable=shims["python"])
        assert (shim.rc, shim.stdout) == (python.rc, python.stdout)
        assert "running in-process" in shim.stderr or "running it again" in shim.stderr
        assert python.error(7)["msg"]
        assert time.monotonic() - t0 < 30
    finally:
        server.close()


@pytest.mark.parametrize("fake", list(FAKES))
def test_fake_daemon_without_python_is_error_11_and_del_is_kept(
        fake: str, fake_dir: Path, shims: dict[str, str]) -> None:
    server = FakeDaemon(fake_dir, FAKES[fake])
    try:
        env = {wire.SOCKET_ENV: str(server.path), "CNI_CONTAINERID": "c2ct-fake",
               "CNI_NETNS": "/proc/1/ns/net", "CNI_IFNAME": "eth0"}
        conf = b'{"cniVersion": "0.4.0", "name": "n", "type": "cni2cnm"}'
        add = run(shims["alone"], {**env, "CNI_COMMAND": "ADD"}, conf)
        doc = json.loads(add.stdout)
        assert add.returncode == 1 and doc["code"] == 11 and doc["cniVersion"] == "0.4.0"
        assert str(server.path) in doc["details"] and "cni2cnm serve" in doc["details"]
        delete = run(shims["alone"], {**env, "CNI_COMMAND": "DEL"}, conf)
        assert (delete.returncode, delete.stdout) == (0, b"")
        kept = list((fake_dir / "pending").iterdir())
        assert len(kept) == 1 and kept[0].stat().st_mode & 0o777 == 0o600
        assert (fake_dir / "pending").stat().st_mode & 0o777 == 0o700
        env_back, data = wire.parse_request(kept[0].read_bytes())
        assert data == conf and env_back["CNI_COMMAND"] == "DEL"
        assert env_back["CNI_CONTAINERID"] == "c2ct-fake"
        assert wire.SOCKET_ENV not in env_back
        assert (fake_dir / "fallbacks").read_text().split() != []
    finally:
        server.close()


def test_reply_printed_byte_for_byte(fake_dir: Path, shims: dict[str, str]) -> None:
    server = FakeDaemon(fake_dir, verbatim_reply)
    try:
        out = run(shims["alone"], {"CNI_COMMAND": "STATUS", wire.SOCKET_ENV: str(server.path)},
                  b"{}")
        assert (out.returncode, out.stdout, out.stderr) == (7, b"\xff\0out\n", b"log \xfe\n")
    finally:
        server.close()


def test_socket_of_another_user_is_not_used(resources: Any, shims: dict[str, str]) -> None:
    """A daemon socket served by uid 65534 (a child that setuid()s): never talked to."""
    d = resources.tmpdir()
    d.chmod(0o777)
    path = d / "d.sock"
    code = ("import socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4)\n"
            "while True:\n"
            f"    c, _ = s.accept(); c.sendall({hello()!r}); time.sleep(0.2); c.close()\n")
    child = subprocess.Popen(["/usr/bin/python3", "-c", code, str(path)], user=NOBODY,
                             group=NOBODY, stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if path.exists():
                break
            time.sleep(0.05)
        assert path.stat().st_uid == NOBODY
        env = {wire.SOCKET_ENV: str(path), "CNI_COMMAND": "STATUS"}
        out = run(shims["alone"], env, b'{"cniVersion": "1.1.0", "name": "n", "type": "x"}')
        doc = json.loads(out.stdout)
        assert doc["code"] == 11 and f"uid {NOBODY}, not root" in doc["details"]
        assert out.returncode == 1
    finally:
        child.kill()
        child.wait(10)


def test_no_daemon_no_python(resources: Any, shims: dict[str, str]) -> None:
    run_dir = resources.tmpdir() / "run"
    env = {wire.SOCKET_ENV: str(run_dir / "d.sock")}
    conf = b'{"cniVersion": "1.1.0", "name": "n", "type": "cni2cnm"}'
    for command in ("ADD", "CHECK", "GC", "STATUS"):
        out = run(shims["alone"], {**env, "CNI_COMMAND": command}, conf)
        assert out.returncode == 1 and json.loads(out.stdout)["code"] == 11, command
    version = run(shims["alone"], {**env, "CNI_COMMAND": "VERSION"},
                  b'{"cniVersion": "0.3.1\\u00e9"}')
    python = subprocess.run([plugin_executable()], input=b'{"cniVersion": "0.3.1\\u00e9"}',
                            env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=True)
    assert version.stdout == python.stdout and version.returncode == 0
    # the daemon disabled: nowhere to keep a DEL, so an error, not a silent loss
    delete = run(shims["alone"], {wire.SOCKET_ENV: "", "CNI_COMMAND": "DEL"}, conf)
    assert delete.returncode == 1 and json.loads(delete.stdout)["code"] == 11
    # stdin over the limit: not kept (bounded), error 11
    big = run(shims["alone"], {**env, "CNI_COMMAND": "DEL"}, b" " * (wire.MAX_STDIN + 1))
    assert big.returncode == 1 and "limits" in json.loads(big.stdout)["details"]
    # a socket directory that others can write: nothing is kept there
    run_dir.mkdir(mode=0o777)
    run_dir.chmod(0o777)
    open_dir = run(shims["alone"], {**env, "CNI_COMMAND": "DEL"}, conf)
    assert open_dir.returncode == 1 and not (run_dir / "pending").exists()


def test_config_keys_read_as_python_reads_them(daemon: Daemon, shims: dict[str, str]) -> None:
    """daemonSocket and daemon from the config (escaped names, the last duplicate wins), when
    the environment does not say: the shim goes where the Python plugin goes."""
    sock = str(daemon.path).replace("/", "\\/")
    base = {"CNI_COMMAND": "STATUS", wire.MODE_ENV: ""}
    cases = {
        "escaped": (f'{{"cniVersion": "1.1.0", "name": "n", "type": "cni2cnm", '
                    f'"daemonS\\u006fcket": "{sock}"}}', True),
        "duplicate": (f'{{"cniVersion": "1.1.0", "name": "n", "type": "cni2cnm", '
                      f'"daemonSocket": "/nonexistent/s", "daemonSocket": "{sock}"}}', True),
        "off": (f'{{"cniVersion": "1.1.0", "name": "n", "type": "cni2cnm", '
                f'"daemonSocket": "{sock}", "daemon": "off"}}', False),
        "not JSON after": (f'{{"cniVersion": "1.1.0", "daemonSocket": "{sock}"}} x', False),
    }
    for name, (conf, served) in cases.items():
        before = daemon.log_text().count("STATUS")
        out = run(shims["alone"], base, conf.encode())
        assert (daemon.log_text().count("STATUS") > before) == served, (name, out)
        if name == "off":
            assert json.loads(out.stdout)["code"] == 11, name


def test_python_plugin_not_root_s_alone_is_not_run(resources: Any, built: Path) -> None:
    d = bin_dir(resources.tmpdir(), built, True)
    (d / SHIM_FALLBACK).chmod(0o777)
    out = run(str(d / "cni2cnm"), {wire.SOCKET_ENV: "", "CNI_COMMAND": "STATUS"}, b"{}")
    assert json.loads(out.stdout)["code"] == 11  # the group/other-writable script was skipped


# ---- a DEL kept while no daemon answered --------------------------------------------------------


def test_kept_del_is_finished_when_the_daemon_starts(
        plugin: Plugin, net: Any, resources: Any, images: Any, shims: dict[str, str]) -> None:
    pod = pause_container(resources, images)
    netns, args = proc_netns(pod), cri_args(pod.id)
    run_dir = resources.tmpdir() / "run"
    env = {wire.SOCKET_ENV: str(run_dir / "cni2cnm.sock"), wire.MODE_ENV: "manual"}
    plugin.run("ADD", pod.id, netns, cni_args=args, env={wire.SOCKET_ENV: ""}).ok()
    assert endpoint(pod, net.name) is not None
    kept = plugin.run("DEL", pod.id, netns, cni_args=args, env=env, executable=shims["alone"])
    assert (kept.rc, kept.stdout) == (0, "") and "DEL kept in" in kept.stderr
    assert len(plugin.records()) == 1 and endpoint(pod, net.name) is not None
    daemon = start_daemon(run_dir)
    try:
        deadline = time.monotonic() + 60
        while any((run_dir / "pending").iterdir()) or plugin.records():
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.1)
        assert endpoint(pod, net.name) is None
        assert "1 done, 0 failed" in daemon.log_text()
    finally:
        assert daemon.stop() == 0


# ---- install ----------------------------------------------------------------------------------


def test_install_places_the_shim_and_uninstall_removes_it(resources: Any, built: Path) -> None:
    root = resources.tmpdir()
    bins, confs, state = root / "bin", root / "net.d", root / "state"
    cli = [str(Path(sys.executable).parent / "cni2cnm"), "install", "--bin-dir", str(bins),
           "--conf-dir", str(confs), "--state-dir", str(state), "--systemd", "no",
           "--daemon-socket", "", "-o", "json"]
    placed = subprocess.run([*cli, "--shim", str(built)], capture_output=True, text=True,
                            check=True, timeout=60)
    assert [a["path"] for a in json.loads(placed.stdout)] == [
        str(bins / SHIM_FALLBACK), str(bins / "cni2cnm")]
    assert (bins / "cni2cnm").read_bytes() == built.read_bytes()
    assert (bins / SHIM_FALLBACK).read_text() == wrapper_text()
    # VERSION through the installed shim runs the Python plugin beside it
    version = subprocess.run([str(bins / "cni2cnm")], input=b"", capture_output=True,
                             env={"CNI_COMMAND": "VERSION"}, check=True)
    assert json.loads(version.stdout)["cniVersion"] == "1.1.0"
    again = subprocess.run([*cli, "--shim", str(built)], capture_output=True, text=True,
                           check=True, timeout=60)
    assert [a["action"] for a in json.loads(again.stdout)] == ["unchanged", "unchanged"]
    removed = subprocess.run([*cli, "--uninstall"], capture_output=True, text=True,
                             check=True, timeout=60)
    assert sorted(a["action"] for a in json.loads(removed.stdout)) == ["removed", "removed"]
    assert list(bins.iterdir()) == []


def test_install_refuses_a_shim_of_another_version(resources: Any) -> None:
    root = resources.tmpdir()
    other = root / "old-shim"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "shim.sh"), str(other)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "C2C_SHIM_VERSION": "0.0.9"})
    assert proc.returncode == 0, proc.stderr
    not_elf = root / "script"
    not_elf.write_text("#!/bin/sh\n")
    cli = [str(Path(sys.executable).parent / "cni2cnm"), "install", "--bin-dir",
           str(root / "bin"), "--conf-dir", str(root / "net.d"), "--state-dir",
           str(root / "state"), "--systemd", "no", "--daemon-socket", ""]
    for shim, why in ((other, "says 'cni2cnm-shim 0.0.9 protocol 3'"),
                      (not_elf, "not an executable (ELF)")):
        refused = subprocess.run([*cli, "--shim", str(shim)], capture_output=True, text=True,
                                 timeout=60, check=False)
        assert refused.returncode == 2 and why in refused.stderr, refused.stderr
    assert not (root / "bin").exists() or list((root / "bin").iterdir()) == []
