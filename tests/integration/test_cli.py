"""The operator CLI against a real engine: inspect and its drift, add/check/del, gc, status,
conflist, install and doctor. Most calls run the installed `cni2cnm` executable; a few use
click's CliRunner in-process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from c2ctest import pause_container, unique_name
from pluginrun import Plugin, cri_args, endpoint, plugin_executable, proc_netns

from cni2cnm.cli import cli as click_cli
from cni2cnm.testing.cli_runner import cli_runner

# The CLI runs operations in its own process by design: the daemon-mode pass skips it.
pytestmark = pytest.mark.own_modes

SCHEMA = {
    "network": str, "containerId": str, "ifname": str, "state": (str, type(None)),
    "mode": (str, type(None)), "dockerNetwork": dict, "dockerContainer": dict, "netns": str,
    "netnsExists": (bool, type(None)), "interface": str, "mac": str, "ips": list,
    "endpointId": str, "engine": (dict, type(None)), "runtime": (dict, type(None)),
    "created": (str, type(None)), "updated": (str, type(None)),
    "ageSeconds": (int, type(None)), "drift": list, "error": (str, type(None)),
}


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class CLI:
    """`cni2cnm ...` with --docker-host and --state-dir of this test."""

    docker_host: str
    state_dir: str

    def __call__(self, *args: str, host: bool = True, state: bool = True,
                 expect: int | None = 0) -> Run:
        argv = [plugin_executable(), *args]
        if host:
            argv += ["--docker-host", self.docker_host]
        if state:
            argv += ["--state-dir", self.state_dir]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180,
                              check=False)
        out = Run(proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        if expect is not None:
            assert out.rc == expect, f"{args}: rc={out.rc}\n{out.stdout}\n{out.stderr}"
        return out

    def inline(self, *args: str) -> Run:
        """In-process, through click's CliRunner."""
        res = cli_runner().invoke(click_cli, [*args, "--docker-host", self.docker_host,
                                             "--state-dir", self.state_dir])
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        return Run(res.exit_code, res.stdout, res.stderr)


@pytest.fixture
def state(resources: Any) -> str:
    return str(resources.tmpdir() / "state")


@pytest.fixture
def c2c(docker_host: str, state: str) -> CLI:
    return CLI(docker_host, state)


@pytest.fixture
def runtime(docker_host: str, state: str, net: Any) -> Plugin:
    """The plugin run as a runtime runs it (not through the CLI)."""
    return Plugin(docker_host, state, net.name)


@pytest.fixture
def pod(resources: Any, images: Any) -> Any:
    return pause_container(resources, images)


def runtime_add(runtime: Plugin, pod: Any) -> dict[str, Any]:
    return runtime.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id)).ok().doc


def subnet_ip(net: Any, last: int) -> str:
    return net.attrs["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0] + f".{last}"


def write_cache(d: Path, runtime: Plugin, pod: Any, result: dict[str, Any]) -> Path:
    """A libcni cache file (cniCacheV1) as a runtime leaves it after ADD."""
    conf = {"cniVersion": "1.0.0", "name": runtime.name,
            "plugins": [{"type": "cni2cnm", "stateDir": runtime.state_dir}]}
    doc = {"kind": "cniCacheV1", "containerId": pod.id, "ifName": "eth0",
           "networkName": runtime.name, "netns": proc_netns(pod),
           "config": base64.b64encode(json.dumps(conf).encode()).decode(), "result": result}
    path = d / f"{runtime.name}-{pod.id}-eth0"
    path.write_text(json.dumps(doc))
    return path


# ==== inspect =================================================================================


def test_inspect_no_drift_after_add(c2c: CLI, runtime: Plugin, pod: Any, net: Any,
                                    resources: Any) -> None:
    result = runtime_add(runtime, pod)
    empty = str(resources.tmpdir())
    [row] = c2c("inspect", "-o", "json", "--cache-dir", empty).json
    assert row["drift"] == [] and row["error"] is None
    assert (row["containerId"], row["ifname"], row["network"], row["state"]) == (
        pod.id, "eth0", net.name, "attached")
    assert row["ips"] == [result["ips"][0]["address"]] == row["engine"]["ips"]
    assert row["mac"] == result["interfaces"][0]["mac"] == row["engine"]["mac"]
    assert row["dockerContainer"] == {"name": pod.name, "id": pod.id, "exists": True,
                                      "status": "running"}
    assert row["dockerNetwork"] == {"name": net.name, "id": net.id, "exists": True,
                                    "driver": "bridge", "scope": "local"}
    assert row["netns"] == proc_netns(pod) and row["netnsExists"] is True
    assert row["runtime"] is None
    table = c2c("inspect", "--cache-dir", empty)
    header, line = table.stdout.splitlines()
    assert header.split() == ["CONTAINER", "IFNAME", "NETWORK", "DOCKER", "STATE", "IPS", "MAC",
                              "MODE", "AGE", "DRIFT"]
    assert line.startswith(pod.id[:12]) and pod.name in line and line.endswith("-")
    wide = c2c("inspect", "-o", "wide", "--cache-dir", empty)
    assert pod.id in wide.stdout and "RUNTIME" in wide.stdout
    # the filter: CNI container ID prefix, Docker name, CID/IFNAME, no match
    for target in (pod.id[:8], pod.name, f"{pod.id}/eth0"):
        assert len(c2c("inspect", target, "-o", "json", "--cache-dir", empty).json) == 1
    none = c2c("inspect", f"{pod.id}/eth9", "-o", "json", "--cache-dir", empty, expect=2)
    assert none.json == [] and "no attachments" in none.stderr


def test_inspect_json_schema(c2c: CLI, runtime: Plugin, pod: Any) -> None:
    runtime_add(runtime, pod)
    rows = c2c.inline("inspect", "-o", "json", "--cache-dir", "/nonexistent-cache").json
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert list(row) == list(SCHEMA)
    for key, types in SCHEMA.items():
        assert isinstance(row[key], types), (key, row[key])
    assert set(row["dockerNetwork"]) == {"name", "id", "exists", "driver", "scope"}
    assert set(row["dockerContainer"]) == {"name", "id", "exists", "status"}
    assert set(row["engine"]) == {"attached", "endpointId", "mac", "ips"}
    assert row["created"].endswith("Z") and row["ageSeconds"] >= 0


def test_inspect_recorded_not_attached(c2c: CLI, runtime: Plugin, pod: Any, net: Any,
                                       docker_client: Any) -> None:
    runtime_add(runtime, pod)
    docker_client.api.disconnect_container_from_network(pod.id, net.id)
    out = c2c("inspect", "-o", "json", "--cache-dir", "/nonexistent-cache", expect=1)
    [row] = out.json
    assert row["drift"] == ["recorded-not-attached"]
    assert row["engine"]["attached"] is False
    table = c2c("inspect", "--cache-dir", "/nonexistent-cache", expect=1)
    assert "recorded-not-attached" in table.stdout


def test_inspect_container_gone(c2c: CLI, runtime: Plugin, pod: Any, docker_client: Any) -> None:
    runtime_add(runtime, pod)
    docker_client.api.remove_container(pod.id, force=True)
    [row] = c2c("inspect", "-o", "json", "--cache-dir", "/nonexistent-cache", expect=1).json
    assert row["drift"] == ["container-gone", "netns-gone"]  # its /proc/PID/ns/net went too
    assert row["dockerContainer"]["exists"] is False and row["engine"] is None


def test_inspect_ips_differ(c2c: CLI, runtime: Plugin, pod: Any, net: Any,
                            docker_client: Any) -> None:
    result = runtime_add(runtime, pod)
    other = subnet_ip(net, 99)
    docker_client.api.disconnect_container_from_network(pod.id, net.id)
    docker_client.api.connect_container_to_network(pod.id, net.id, ipv4_address=other)
    [row] = c2c("inspect", "-o", "json", "--cache-dir", "/nonexistent-cache", expect=1).json
    assert row["drift"] == ["ips-differ"]
    assert row["ips"] == [result["ips"][0]["address"]]
    assert row["engine"]["ips"] == [f"{other}/24"]


def test_inspect_netns_gone(c2c: CLI, runtime: Plugin, pod: Any, resources: Any) -> None:
    name = unique_name("ns")
    path = resources.attach_netns(pod, name)
    runtime.run("ADD", "cnitool-" + "5e" * 10, path).ok()
    [row] = c2c("inspect", "-o", "json", "--cache-dir", "/nonexistent-cache").json
    assert row["drift"] == [] and row["netnsExists"] is True
    subprocess.run(["ip", "netns", "delete", name], check=True)
    [row] = c2c("inspect", "-o", "json", "--cache-dir", "/nonexistent-cache", expect=1).json
    assert row["drift"] == ["netns-gone"] and row["netnsExists"] is False
    assert row["engine"]["attached"] is True  # the container still has it


def test_inspect_runtime_cache(c2c: CLI, runtime: Plugin, pod: Any, resources: Any) -> None:
    result = runtime_add(runtime, pod)
    cache = resources.tmpdir()
    path = write_cache(cache, runtime, pod, result)
    [row] = c2c("inspect", "-o", "json", "--cache-dir", str(cache)).json
    assert row["runtime"] == {"cacheFile": str(path), "ips": [result["ips"][0]["address"]],
                              "mac": result["interfaces"][0]["mac"], "netns": proc_netns(pod)}
    assert row["drift"] == []
    wide = c2c("inspect", "-o", "wide", "--cache-dir", str(cache)).stdout
    assert wide.count(result["ips"][0]["address"]) == 3  # recorded, engine, runtime
    changed = json.loads(json.dumps(result))
    changed["ips"][0]["address"] = "10.249.9.9/24"
    write_cache(cache, runtime, pod, changed)
    [row] = c2c("inspect", "-o", "json", "--cache-dir", str(cache), expect=1).json
    assert row["drift"] == ["runtime-differs"] and row["runtime"]["ips"] == ["10.249.9.9/24"]
    # a cni2cnm attachment only the runtime knows (same state dir)
    path.unlink()
    runtime.run("DEL", pod.id, proc_netns(pod), prev=result).silent()
    write_cache(cache, runtime, pod, result)
    [row] = c2c("inspect", "-o", "json", "--cache-dir", str(cache), expect=1).json
    assert row["drift"] == ["runtime-only"] and row["state"] is None


def test_inspect_engine_unreachable_shows_the_store(c2c: CLI, runtime: Plugin, pod: Any) -> None:
    runtime_add(runtime, pod)
    out = c2c("inspect", "-o", "json", "--docker-host", "unix:///nonexistent.sock", host=False,
              expect=2)
    [row] = out.json
    assert row["drift"] == ["engine-unreachable"] and row["containerId"] == pod.id
    assert row["dockerContainer"]["exists"] is None and row["engine"] is None
    assert "did not answer" in out.stderr


# ==== add / check / del =======================================================================


def test_add_check_del_by_container_name(c2c: CLI, pod: Any, net: Any, state: str) -> None:
    res = c2c("add", pod.name, "--network", net.name).json
    ep = endpoint(pod, net.name)
    assert res["ips"][0]["address"] == f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
    assert res["interfaces"][0]["sandbox"] == proc_netns(pod)
    cache = Path(state, "cli-results", f"{net.name}-{pod.id}-eth0.json")
    assert json.loads(cache.read_text())["result"] == res
    [row] = c2c("inspect", "-o", "json").json  # the CLI's own cache is the runtime view
    assert row["runtime"]["ips"] == row["ips"] and row["drift"] == []
    assert c2c("check", pod.name, "--network", net.name).stdout == ""
    # CHECK fails (code 103, the plugin's error verbatim) once the endpoint is gone
    pod.client.api.disconnect_container_from_network(pod.id, net.id)
    bad = c2c("check", pod.name, "--network", net.name, expect=1)
    assert bad.json["code"] == 103 and "CNI error 103" in bad.stderr
    assert c2c("del", pod.name, "--network", net.name).stdout == ""
    assert not cache.exists() and endpoint(pod, net.name) is None
    assert c2c("inspect", "-o", "json").json == []
    c2c("del", pod.name, "--network", net.name)  # nothing left: still success


def test_add_check_del_by_netns_path(c2c: CLI, pod: Any, net: Any, state: str) -> None:
    path = proc_netns(pod)
    want = subnet_ip(net, 42)
    res = c2c("add", path, "--network", net.name, "--ip", want, "--alias", "web",
              "--cni-version", "1.1.0").json
    assert res["cniVersion"] == "1.1.0" and res["ips"][0]["address"] == f"{want}/24"
    ep = endpoint(pod, net.name)
    assert ep["IPAddress"] == want and "web" in ep["Aliases"]
    [row] = c2c("inspect", "-o", "json").json
    cid = row["containerId"]
    assert cid.startswith("cni2cnm-") and len(cid) == len("cni2cnm-") + 20
    assert row["dockerContainer"]["id"] == pod.id and row["drift"] == []
    c2c("check", path, "--network", net.name, "--cni-version", "1.1.0")
    c2c("check", pod.name, "--network", net.name, "--cni-version", "1.1.0")  # found by record
    c2c("del", pod.name, "--network", net.name)
    assert endpoint(pod, net.name) is None
    assert not any(Path(state, "cli-results").iterdir())


def test_add_reports_the_plugins_error(c2c: CLI, pod: Any, net: Any) -> None:
    out = c2c("add", pod.name, "--network", net.name, "--ip", "10.247.255.254", expect=1)
    assert out.json["code"] == 7 and "does not belong" in out.json["details"]
    assert "ADD failed with CNI error 7" in out.stderr
    missing = c2c("add", "no-such-container-c2ct", "--network", net.name, expect=2)
    assert missing.stdout == "" and "no Docker container" in missing.stderr


# ==== gc / status ============================================================================


def test_gc_keeps_what_is_listed(c2c: CLI, runtime: Plugin, net: Any, resources: Any,
                                 images: Any) -> None:
    keep, drop = pause_container(resources, images), pause_container(resources, images)
    runtime_add(runtime, keep)
    runtime_add(runtime, drop)
    c2c("gc", "--network", net.name, "--keep", f"{keep.id}/eth0")
    assert endpoint(keep, net.name) is not None and endpoint(drop, net.name) is None
    assert [r.container_id for r in runtime.records()] == [keep.id]
    c2c("gc", "--network", net.name, expect=2)  # neither --keep nor --all
    c2c.inline("gc", "--network", net.name, "--all")
    assert endpoint(keep, net.name) is None and runtime.records() == []


def test_status(c2c: CLI, net: Any) -> None:
    ok = c2c("status", "--network", net.name)
    assert ok.stdout == "" and "available" in ok.stderr
    bad = c2c("status", "--network", unique_name("missing"), expect=1)
    assert bad.json["code"] == 50 and bad.json["cniVersion"] == "1.1.0"
    down = c2c("status", "--network", net.name, "--docker-host", "unix:///nonexistent.sock",
               host=False, expect=1)
    assert down.json["code"] == 50


# ==== conflist ===============================================================================


def test_conflist_round_trip(c2c: CLI, pod: Any, net: Any, resources: Any, state: str) -> None:
    f = resources.tmpdir() / "10-test.conflist"
    c2c("conflist", net.name, "--name", "c2ct-cni", "--chain", "tuning,portmap",
        "-o", str(f))
    doc = json.loads(f.read_text())
    assert doc["name"] == "c2ct-cni" and [p["type"] for p in doc["plugins"]] == [
        "cni2cnm", "tuning", "portmap"]
    entry = doc["plugins"][0]
    assert entry["network"] == net.name and entry["stateDir"] == state
    assert entry["capabilities"] == {"ips": True, "mac": True, "aliases": True,
                                     "portMappings": True}
    note = entry["args"]["cni2cnm"]
    assert note["driver"] == "bridge" and note["scope"] == "local"
    assert note["subnets"] == [
        {"subnet": c["Subnet"], **({"gateway": c["Gateway"]} if c.get("Gateway") else {})}
        for c in net.attrs["IPAM"]["Config"]]
    assert c2c("conflist", net.name).json["plugins"][0]["network"] == net.name  # stdout
    res = c2c("add", pod.name, "--conf", str(f), "--ip", subnet_ip(net, 50)).json
    assert res["ips"][0]["address"] == f"{subnet_ip(net, 50)}/24"
    assert endpoint(pod, net.name)["IPAddress"] == subnet_ip(net, 50)
    c2c("check", pod.name, "--conf", str(f))
    c2c("del", pod.name, "--conf", str(f))
    assert endpoint(pod, net.name) is None
    gone = c2c("conflist", unique_name("missing"), expect=2)
    assert gone.stdout == "" and "does not exist" in gone.stderr


# ==== install ================================================================================


def test_install_uninstall(c2c: CLI, net: Any, resources: Any, state: str) -> None:
    root = resources.tmpdir()
    bin_dir, conf_dir = root / "bin", root / "net.d"
    dirs = ["--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir)]
    plugin, conf = bin_dir / "cni2cnm", conf_dir / f"10-cni2cnm-{net.name}.conflist"
    first = c2c("install", *dirs, "--network", net.name, "-o", "json").json
    assert [(a["path"], a["action"]) for a in first] == [(str(plugin), "installed"),
                                                         (str(conf), "installed")]
    assert os.access(plugin, os.X_OK) and plugin.read_text().startswith("#!")
    assert json.loads(conf.read_text())["plugins"][0]["network"] == net.name
    # the wrapper is a working plugin
    proc = subprocess.run([str(plugin)], input='{"cniVersion":"1.0.0"}', text=True,
                          capture_output=True, env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin"},
                          check=True, timeout=30)
    assert len(json.loads(proc.stdout)["supportedVersions"]) == 7
    again = c2c("install", *dirs, "--network", net.name)
    assert again.stdout.split() == ["unchanged", str(plugin), "unchanged", str(conf)]
    conf.write_text('{"edited": true}\n')
    refused = c2c("install", *dirs, "--network", net.name, expect=2)
    assert "refusing to overwrite" in refused.stderr and str(conf) in refused.stderr
    assert conf.read_text() == '{"edited": true}\n'
    forced = c2c("install", *dirs, "--network", net.name, "--force", "-o", "json").json
    assert [a["action"] for a in forced] == ["unchanged", "replaced"]
    foreign = conf_dir / "99-foreign.conflist"
    foreign.write_text("{}\n")
    (bin_dir / "bridge").write_text("#!/bin/sh\n")
    removed = c2c("install", *dirs, "--uninstall", "-o", "json").json
    assert sorted((a["path"], a["action"]) for a in removed) == [
        (str(plugin), "removed"), (str(conf), "removed")]
    assert sorted(p.name for p in conf_dir.iterdir()) == ["99-foreign.conflist"]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["bridge"]
    assert c2c("install", *dirs, "--uninstall").stdout == ""
    # a placed file changed since: uninstall keeps it and says so
    c2c("install", *dirs)
    plugin.write_text("#!/bin/sh\necho changed\n")
    kept = c2c("install", *dirs, "--uninstall", expect=1)
    assert kept.stdout.startswith("kept") and plugin.exists()


def test_install_writes_the_daemon_socket_into_the_conflist(c2c: CLI, net: Any,
                                                            resources: Any) -> None:
    root = resources.tmpdir()
    dirs = ["--bin-dir", str(root / "bin"), "--conf-dir", str(root / "net.d")]
    sock = str(root / "run" / "d.sock")
    c2c("install", *dirs, "--network", net.name, "--systemd", "no", "--daemon-socket", sock)
    conf = root / "net.d" / f"10-cni2cnm-{net.name}.conflist"
    assert json.loads(conf.read_text())["plugins"][0]["daemonSocket"] == sock
    c2c("install", *dirs, "--uninstall", "--daemon-socket", sock)


# ==== doctor =================================================================================


def test_doctor_good_setup(c2c: CLI, net: Any, resources: Any) -> None:
    root = resources.tmpdir()
    dirs = ["--bin-dir", str(root / "bin"), "--conf-dir", str(root / "net.d")]
    c2c("install", *dirs, "--network", net.name)
    out = c2c("doctor", *dirs, "--network", net.name)
    lines = out.stdout.splitlines()
    status = {ln.split()[1]: ln.split()[0] for ln in lines}
    for check in ("engine", "api", "network", "state-dir", "bin", "conf", "version"):
        assert status[check] == "OK", out.stdout
    assert all(s in ("OK", "WARN") for s in status.values())
    assert status["ifname"] in ("OK", "WARN") and status["mac"] in ("OK", "WARN")
    report = c2c("doctor", *dirs, "--network", net.name, "-o", "json").json
    assert report["ok"] is True
    assert {c["check"] for c in report["checks"]} >= {"engine", "api", "ifname", "mac",
                                                      "network", "state-dir", "bin", "conf",
                                                      "version"}


def test_doctor_failures(c2c: CLI, net: Any, resources: Any) -> None:
    root = resources.tmpdir()
    dirs = ["--bin-dir", str(root / "bin"), "--conf-dir", str(root / "net.d")]
    missing = unique_name("missing")
    out = c2c("doctor", *dirs, "--network", missing, expect=1)
    fails = [ln for ln in out.stdout.splitlines() if ln.startswith("FAIL")]
    assert any(ln.split()[1] == "network" and missing in ln for ln in fails), out.stdout
    assert any(ln.split()[1] == "bin" and "cni2cnm install" in ln for ln in fails)
    down = c2c("doctor", *dirs, "--docker-host", "unix:///nonexistent.sock", host=False,
               expect=1)
    [engine_line] = [ln for ln in down.stdout.splitlines() if ln.split()[1] == "engine"]
    assert engine_line.startswith("FAIL") and "nonexistent.sock" in engine_line
    report = c2c("doctor", *dirs, "--docker-host", "unix:///nonexistent.sock", host=False,
                 expect=1, state=True)
    assert report.stdout.startswith(("OK", "WARN"))
