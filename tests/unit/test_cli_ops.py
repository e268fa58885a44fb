"""The CLI's building blocks without an engine: conflists, configs for the plugin, the result
cache, install/uninstall, and the command line's help and error edge."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cni2cnm.cli import cli
from cni2cnm.engine import Network, Subnet
from cni2cnm.ops import OpError, invoke, resultcache
from cni2cnm.ops import conflist as cl
from cni2cnm.ops import install as inst
from cni2cnm.testing.cli_runner import cli_runner

NETWORK = Network(id="n" * 64, name="pods", driver="bridge", scope="local", internal=False,
                  attachable=False, ipv6=True,
                  subnets=(Subnet("10.240.3.0/24", "10.240.3.1"), Subnet("fd00:c2c::/64", None)),
                  members=())


# ---- conflist -------------------------------------------------------------------------------


def test_conflist_minimal() -> None:
    doc = cl.build(NETWORK)
    assert doc["cniVersion"] == "1.0.0" and doc["name"] == "pods"
    [entry] = doc["plugins"]
    assert entry["type"] == "cni2cnm" and entry["network"] == "pods"
    assert entry["capabilities"] == {"ips": True, "mac": True, "aliases": True}
    assert "dockerHost" not in entry and "stateDir" not in entry
    assert entry["args"]["cni2cnm"]["subnets"] == [
        {"subnet": "10.240.3.0/24", "gateway": "10.240.3.1"}, {"subnet": "fd00:c2c::/64"}]
    assert entry["args"]["cni2cnm"]["driver"] == "bridge"
    assert entry["args"]["cni2cnm"]["scope"] == "local"


def test_conflist_chain_and_overrides() -> None:
    doc = cl.build(NETWORK, name="other", cni_version="1.1.0",
                   chain=cl.parse_chain(["tuning,portmap", "bandwidth", "sbr"]),
                   docker_host="tcp://10.0.0.1:2376", state_dir="/srv/state")
    entry, *chain = doc["plugins"]
    assert doc["name"] == "other" and doc["cniVersion"] == "1.1.0"
    assert entry["capabilities"]["portMappings"] is True
    assert entry["dockerHost"] == "tcp://10.0.0.1:2376" and entry["stateDir"] == "/srv/state"
    assert chain == [{"type": "tuning"},
                     {"type": "portmap", "capabilities": {"portMappings": True}},
                     {"type": "bandwidth", "capabilities": {"bandwidth": True}},
                     {"type": "sbr"}]


def test_conflist_daemon_socket_only_when_not_the_default() -> None:
    from cni2cnm.daemon.wire import DEFAULT_SOCKET

    assert "daemonSocket" not in cl.build(NETWORK, daemon_socket=DEFAULT_SOCKET)["plugins"][0]
    assert cl.build(NETWORK, daemon_socket="/run/x/d.sock")["plugins"][0]["daemonSocket"] == \
        "/run/x/d.sock"
    assert cl.build(NETWORK, daemon_socket="")["plugins"][0]["daemonSocket"] == ""  # no daemon


def test_conflist_daemon_mode() -> None:
    assert "daemon" not in cl.build(NETWORK, daemon="auto")["plugins"][0]
    [entry] = cl.build(NETWORK, daemon="manual")["plugins"]
    assert entry["daemon"] == "manual"


@pytest.mark.parametrize("chain", [["cni2cnm"], ["bad name"], ["../x"]])
def test_conflist_bad_chain(chain: list[str]) -> None:
    with pytest.raises(OpError):
        cl.parse_chain(chain)


def test_conflist_validation() -> None:
    with pytest.raises(OpError, match="network name"):
        cl.build(NETWORK, name="-bad")
    with pytest.raises(OpError, match="plugins\\[0\\]"):
        cl.validate({"cniVersion": "9.9.9", "name": "x", "plugins": [{"type": "cni2cnm"}]})
    with pytest.raises(OpError, match="stateDir"):
        cl.validate({"cniVersion": "1.0.0", "name": "x",
                     "plugins": [{"type": "cni2cnm", "stateDir": "relative"}]})


# ---- configs handed to the plugin -----------------------------------------------------------

SETTINGS = invoke.Settings(docker_host="unix:///d.sock", state_dir="/tmp/s")


def test_plugin_conf_generated() -> None:
    conf = invoke.plugin_conf(SETTINGS, "pods", None, None)
    assert conf == {"cniVersion": "1.0.0", "name": "pods", "type": "cni2cnm",
                    "stateDir": "/tmp/s"}
    invoke.add_runtime_config(conf, None, ["10.240.0.5/24"], "02:42:0a:f0:00:05", ["web"])
    assert conf["capabilities"] == {"ips": True, "mac": True, "aliases": True}
    assert conf["runtimeConfig"] == {"ips": ["10.240.0.5/24"], "mac": "02:42:0a:f0:00:05",
                                     "aliases": ["web"]}
    with pytest.raises(OpError, match="--network"):
        invoke.plugin_conf(SETTINGS, None, None, None)


def test_plugin_conf_from_conflist(tmp_path: Path) -> None:
    f = tmp_path / "10.conflist"
    f.write_text(json.dumps({"cniVersion": "0.4.0", "name": "pods", "disableCheck": True,
                             "plugins": [{"type": "cni2cnm", "stateDir": "/srv/x",
                                          "capabilities": {"ips": True}},
                                         {"type": "tuning"}]}))
    conf = invoke.plugin_conf(SETTINGS, None, str(f), None)
    assert conf["cniVersion"] == "0.4.0" and conf["name"] == "pods"
    assert conf["stateDir"] == "/srv/x" and conf["_disableCheck"] is True
    explicit = invoke.Settings("tcp://h:1", "/tmp/o", docker_host_explicit=True,
                               state_dir_explicit=True)
    conf = invoke.plugin_conf(explicit, "pods", str(f), "1.1.0")
    assert (conf["stateDir"], conf["dockerHost"], conf["cniVersion"]) == (
        "/tmp/o", "tcp://h:1", "1.1.0")
    invoke.add_runtime_config(conf, str(f), ["10.0.0.1"], None, [])
    with pytest.raises(OpError, match="capabilities"):
        invoke.add_runtime_config(conf, str(f), [], "02:42:0a:f0:00:05", [])
    with pytest.raises(OpError, match="not 'other'"):
        invoke.plugin_conf(SETTINGS, "other", str(f), None)


def test_plugin_conf_file_errors(tmp_path: Path) -> None:
    f = tmp_path / "x.conf"
    f.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "bridge"}))
    with pytest.raises(OpError, match="not a cni2cnm config"):
        invoke.load_conf_file(str(f))
    f.write_text(json.dumps({"name": "n", "plugins": [{"type": "bridge"}]}))
    with pytest.raises(OpError, match="no plugin entry"):
        invoke.load_conf_file(str(f))
    f.write_text("[1]")
    with pytest.raises(OpError, match="JSON object"):
        invoke.load_conf_file(str(f))
    with pytest.raises(OpError, match="does not exist"):
        invoke.load_conf_file(str(tmp_path / "missing"))


def test_netns_container_id_is_cnitool_style() -> None:
    cid = invoke.netns_container_id("/run/netns/x")
    assert cid.startswith("cni2cnm-") and len(cid) == len("cni2cnm-") + 20
    assert cid == invoke.netns_container_id("/run/netns/x")


def test_parse_keep() -> None:
    assert invoke.parse_keep(["abc/eth1", "def"]) == [
        {"containerID": "abc", "ifname": "eth1"}, {"containerID": "def", "ifname": "eth0"}]
    with pytest.raises(OpError):
        invoke.parse_keep(["/eth0"])


def test_result_cache_round_trip(tmp_path: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "pods", "type": "cni2cnm", "stateDir": str(tmp_path),
            "runtimeConfig": {"ips": ["10.0.0.2"]}}
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
              "ips": [{"address": "10.0.0.2/24", "interface": 0}], "dns": {}}
    path = resultcache.cli_path(str(tmp_path), "pods", "cid", "eth0")
    resultcache.write_cli_result(path, conf, "cid", "eth0", "/x", invoke.CNI_ARGS, result)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(Path(path).read_text())["cniArgs"] == [["IgnoreUnknown", "1"]]
    assert resultcache.cached_result(path) == result
    as040 = invoke.as_version(result, "0.4.0")
    assert as040["cniVersion"] == "0.4.0" and as040["ips"][0]["version"] == "4"
    [entry], _ = resultcache.read_runtime_cache([os.path.dirname(path)])
    assert entry.key == ("pods", "cid", "eth0") and entry.uses_cni2cnm
    assert entry.state_dir == str(tmp_path) and entry.ips == ("10.0.0.2/24",)


# ---- install --------------------------------------------------------------------------------


def test_wrapper_runs_this_installation(tmp_path: Path) -> None:
    text = inst.wrapper_text()
    assert text.startswith(f"#!{os.path.abspath(sys.executable)} -IS\n")
    assert f"sys.path.insert(0, {str(Path(inst.__file__).parents[2])!r})" in text
    plugin = tmp_path / "cni2cnm"
    plugin.write_text(text)
    plugin.chmod(0o755)
    proc = subprocess.run([str(plugin)], input=b'{"cniVersion": "0.4.0"}', timeout=60,
                          env={"CNI_COMMAND": "VERSION", "PYTHONPATH": "/nonexistent"},
                          capture_output=True, check=True)
    assert json.loads(proc.stdout)["cniVersion"] == "0.4.0"


def test_the_plugin_file_never_runs_with_the_runtime_s_umask(tmp_path: Path) -> None:
    """A runtime with umask 000: the package's __pycache__ directories Python makes on the
    first run are 0755, not world-writable (anyone could then replace root's bytecode)."""
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(Path(inst.__file__).parents[1], pkg / "cni2cnm",
                    ignore=shutil.ignore_patterns("__pycache__", "_shim"))
    plugin = tmp_path / "cni2cnm"
    plugin.write_text(inst.wrapper_text(sys.executable, str(pkg)))
    plugin.chmod(0o755)
    proc = subprocess.run(["sh", "-c", f"umask 000; exec {plugin}"],
                          input=b'{"cniVersion": "1.0.0"}', timeout=60,
                          env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=True)
    assert json.loads(proc.stdout)["cniVersion"] == "1.0.0"
    caches = list(pkg.rglob("__pycache__"))
    assert caches and {oct(c.stat().st_mode & 0o777) for c in caches} == {oct(0o755)}


def test_the_sh_wrapper_sets_the_umask_before_python_starts(tmp_path: Path) -> None:
    probe = tmp_path / "with space" / "python"  # a path a #! line cannot carry
    probe.parent.mkdir()
    probe.write_text("#!/bin/sh\numask\n")
    probe.chmod(0o755)
    plugin = tmp_path / "cni2cnm"
    plugin.write_text(inst.wrapper_text(str(probe), "/x"))
    plugin.chmod(0o755)
    out = subprocess.run(["sh", "-c", f"umask 000; exec {plugin}"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "0022"


def test_wrapper_falls_back_to_sh_for_paths_a_shebang_cannot_carry() -> None:
    spaced = inst.wrapper_text("/opt/my tools/bin/python", "/x")
    assert spaced.startswith("#!/bin/sh\n")
    assert "exec '/opt/my tools/bin/python' -I -m cni2cnm \"$@\"" in spaced
    assert inst.wrapper_text("/p" * 150, "/x").startswith("#!/bin/sh\n")


def test_install_uninstall(tmp_path: Path) -> None:
    state, bin_dir, conf_dir = str(tmp_path / "state"), tmp_path / "bin", tmp_path / "net.d"
    planned = [inst.Planned(inst.plugin_path(str(bin_dir)), inst.wrapper_text(), 0o755),
               inst.Planned(inst.conflist_path(str(conf_dir), "pods"), "{}\n", 0o644)]
    assert [a.action for a in inst.install(planned, state, False)] == ["installed"] * 2
    assert stat.S_IMODE(os.stat(bin_dir / "cni2cnm").st_mode) == 0o755
    assert [a.action for a in inst.install(planned, state, False)] == ["unchanged"] * 2
    (conf_dir / "99-foreign.conflist").write_text("foreign")
    (conf_dir / "10-cni2cnm-pods.conflist").write_text("edited")
    with pytest.raises(OpError, match="refusing to overwrite"):
        inst.install(planned, state, False)
    assert (conf_dir / "10-cni2cnm-pods.conflist").read_text() == "edited"
    assert [a.action for a in inst.install(planned, state, True)] == ["unchanged", "replaced"]
    (bin_dir / "cni2cnm").write_text("#!/bin/sh\necho mine\n")
    actions = inst.uninstall(state, str(bin_dir), str(conf_dir), None)
    assert {a.path: a.action for a in actions} == {
        str(bin_dir / "cni2cnm"): "kept", str(conf_dir / "10-cni2cnm-pods.conflist"): "removed"}
    assert (bin_dir / "cni2cnm").exists() and (conf_dir / "99-foreign.conflist").exists()
    assert not (conf_dir / "10-cni2cnm-pods.conflist").exists()


def test_install_refuses_a_symlinked_state_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    planned = [inst.Planned(inst.plugin_path(str(tmp_path / "bin")), inst.wrapper_text(), 0o755)]
    with pytest.raises(OpError, match=r"state directory: .*state is a symbolic link"):
        inst.install(planned, str(tmp_path / "state"), False)
    assert list(real.iterdir()) == [] and not (tmp_path / "bin").exists()


def test_shim_only_places_the_shim_alone(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inst, "read_shim", lambda path: b"\x7fELF shim " + path.encode())
    [only] = inst.plugin_files(str(tmp_path), "/s", python=False)
    assert only.path == inst.plugin_path(str(tmp_path)) and only.content == b"\x7fELF shim /s"
    assert len(inst.plugin_files(str(tmp_path), "/s")) == 2  # the Python plugin beside it
    with pytest.raises(OpError, match="--shim-only needs a shim"):
        inst.plugin_files(str(tmp_path), None, python=False)


def test_uninstalling_everything_removes_the_manifest(tmp_path: Path) -> None:
    state, bin_dir = tmp_path / "state", tmp_path / "bin"
    planned = [inst.Planned(inst.plugin_path(str(bin_dir)), inst.wrapper_text(), 0o755)]
    inst.install(planned, str(state), False)
    assert (state / inst.MANIFEST).exists()
    assert [a.action for a in inst.uninstall(str(state), str(bin_dir), str(tmp_path), None)] \
        == ["removed"]
    assert not (state / inst.MANIFEST).exists()


def test_uninstall_without_manifest_recognises_the_wrapper(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cni2cnm").write_text(inst.wrapper_text())
    actions = inst.uninstall(str(tmp_path / "state"), str(bin_dir), str(tmp_path / "c"), None)
    assert [a.action for a in actions] == ["removed"]
    assert inst.uninstall(str(tmp_path / "state"), str(bin_dir), str(tmp_path / "c"), None) == []


def test_the_shim_the_package_carries_is_placed_by_default(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cni2cnm.cli import node

    shim = tmp_path / "cni2cnm-shim"
    monkeypatch.setattr(inst, "PACKAGED_SHIM", str(shim))  # joined to the package: absolute
    assert node._shim("auto") is None  # the package carries none
    shim.write_bytes(inst.ELF_MAGIC)
    assert node._shim("auto") == str(shim)
    assert node._shim("none") is None
    assert node._shim("/opt/x/shim") == "/opt/x/shim"


def test_a_placed_shim_and_the_python_plugin_beside_it_are_uninstalled(tmp_path: Path) -> None:
    state, bin_dir = str(tmp_path / "state"), tmp_path / "bin"
    planned = [inst.Planned(str(bin_dir / inst.SHIM_FALLBACK), inst.wrapper_text(), 0o755),
               inst.Planned(inst.plugin_path(str(bin_dir)), inst.ELF_MAGIC + b"\0\xff", 0o755)]
    assert [a.action for a in inst.install(planned, state, False)] == ["installed"] * 2
    assert (bin_dir / "cni2cnm").read_bytes() == inst.ELF_MAGIC + b"\0\xff"
    assert [a.action for a in inst.install(planned, state, False)] == ["unchanged"] * 2
    actions = inst.uninstall(state, str(bin_dir), str(tmp_path / "c"), None)
    assert sorted(a.action for a in actions) == ["removed", "removed"]
    assert list(bin_dir.iterdir()) == []


# ---- the command line -----------------------------------------------------------------------

COMMANDS = sorted(cli.commands)  # every command the CLI has, not a hand-written list
# Commands that do not talk to an engine of their own choosing: the daemon takes each
# request's engine from its config, `version` asks none.
WITHOUT_ENGINE_OPTIONS = {"version", "serve"}
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command: str) -> None:
    res = cli_runner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and f"cni2cnm {command}" in res.output
    if command not in WITHOUT_ENGINE_OPTIONS:
        assert "--docker-host" in res.output and "--state-dir" in res.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command: str) -> None:
    # `cni2cnm add|check|del ...` documents three at once.
    assert re.search(rf"cni2cnm ([a-z]+\|)*{command}\b", README), command


def one_line_error(res: Any, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("cni2cnm: error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["conflist", "pods"],
        ["add", "pod1", "--network", "pods"],
        ["install", "--network", "pods"],
    ],
)
def test_unreachable_engine_is_one_line(tmp_path: Path, args: list[str]) -> None:
    res = cli_runner().invoke(cli, [*args, "--docker-host", "unix:///nonexistent.sock",
                                   "--state-dir", str(tmp_path / "s")])
    assert "nonexistent.sock" in one_line_error(res)


def test_inspect_unreachable_prints_the_store(tmp_path: Path) -> None:
    res = cli_runner().invoke(cli, ["inspect", "-o", "json", "--docker-host",
                                   "unix:///nonexistent.sock", "--state-dir", str(tmp_path)])
    assert res.exit_code == 2 and json.loads(res.stdout) == []


def test_gc_without_keep_needs_all(tmp_path: Path) -> None:
    res = cli_runner().invoke(cli, ["gc", "--network", "pods", "--state-dir", str(tmp_path)])
    assert "--all" in one_line_error(res)


def test_bad_conf_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.conflist"
    bad.write_text("{")
    res = cli_runner().invoke(cli, ["add", "pod1", "--conf", str(bad)])
    assert "not valid JSON" in one_line_error(res)


def test_the_executable_never_prints_a_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "cni2cnm"
    if not exe.exists():
        pytest.fail("cni2cnm is not installed next to this interpreter: pip install -e .")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    proc = subprocess.run([str(exe), "doctor", "--docker-host", "unix:///nonexistent.sock",
                           "--state-dir", str(tmp_path / "s"), "--bin-dir", str(tmp_path),
                           "--conf-dir", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert "FAIL  engine" in proc.stdout


def test_install_makes_missing_directories_0755_whatever_the_umask(tmp_path: Path) -> None:
    planned = [inst.Planned(inst.plugin_path(str(tmp_path / "opt" / "cni" / "bin")),
                            inst.wrapper_text(), 0o755)]
    old = os.umask(0)
    try:
        inst.install(planned, str(tmp_path / "var" / "lib" / "state"), False)
    finally:
        os.umask(old)
    made = [tmp_path / "opt", tmp_path / "opt" / "cni", tmp_path / "opt" / "cni" / "bin",
            tmp_path / "var", tmp_path / "var" / "lib"]
    assert [stat.S_IMODE(p.stat().st_mode) for p in made] == [0o755] * 5
    assert stat.S_IMODE((tmp_path / "var" / "lib" / "state").stat().st_mode) == 0o700
