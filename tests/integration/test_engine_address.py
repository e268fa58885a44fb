"""Engine addresses (issue 19, item 8) through the real plugin file and CLI: an unusable
dockerHost or DOCKER_HOST is code 7 naming the problem, never a traceback, and a password in
it is never printed (stdout, stderr, the logFile, doctor, inspect)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from c2ctest import pause_container
from pluginrun import Plugin, cri_args, plugin_executable, proc_netns

SECRET = "hunter2"
BAD = {
    "tcp://[::1": "not a valid URL",
    "tcp://[::1]:99999": "Port out of range",
    f"tcp://admin:{SECRET}@host:2376": "a password in the address is refused",
    "tcp://engine.invalid": "no port",
    "ftp://engine.invalid:21": "unsupported scheme",
}


@pytest.mark.parametrize("address", list(BAD))
@pytest.mark.parametrize("command", ["ADD", "STATUS"])  # a DEL with nothing recorded: 0
def test_unusable_dockerhost_is_code_7(plugin: Plugin, resources: Any, images: Any,
                                       address: str, command: str) -> None:
    pod = pause_container(resources, images)
    log = resources.tmpdir() / "plugin.log"
    conf = plugin.conf(dockerHost=address, logFile=str(log), logLevel="debug",
                       cniVersion="1.1.0")
    out = plugin.run(command, pod.id, proc_netns(pod), cni_args=cri_args(pod.id), conf=conf)
    doc = out.error(7)
    assert BAD[address] in doc["details"], doc
    logged = log.read_text() if log.exists() else ""
    for text in (out.stdout, out.stderr, logged):
        assert "Traceback" not in text, text
        assert SECRET not in text, text


@pytest.mark.parametrize("address", ["tcp://[::1]:99999", f"tcp://u:{SECRET}@[::1]:2376"])
def test_unusable_docker_host_variable_is_code_7(plugin: Plugin, resources: Any,
                                                 images: Any, address: str) -> None:
    pod = pause_container(resources, images)
    out = plugin.run("ADD", pod.id, proc_netns(pod), cni_args=cri_args(pod.id),
                     env={"DOCKER_HOST": address})
    doc = out.error(7)
    assert "engine address" in doc["details"], doc
    assert SECRET not in out.stdout + out.stderr and "Traceback" not in out.stderr


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    return subprocess.run([plugin_executable(), *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.mark.own_modes
def test_doctor_and_inspect_never_print_a_password(docker_host: str, resources: Any,
                                                   net: Any) -> None:
    state = str(resources.tmpdir() / "state")
    conf_dir = resources.tmpdir() / "net.d"
    conf_dir.mkdir()
    secret_host = f"tcp://admin:{SECRET}@127.0.0.1:2376"
    (conf_dir / "10-x.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": net.name,
        "plugins": [{"type": "cni2cnm", "dockerHost": secret_host}]}))
    doctor = cli("doctor", "--docker-host", docker_host, "--state-dir", state, "--conf-dir",
                 str(conf_dir), "-o", "json")
    assert doctor.returncode in (0, 1), doctor.stderr
    assert "tcp://***@127.0.0.1:2376" in doctor.stdout, doctor.stdout
    for argv in (["doctor", "--docker-host", secret_host, "--conf-dir", str(conf_dir)],
                 ["inspect", "--docker-host", secret_host],
                 ["status", "--network", net.name, "--docker-host", secret_host]):
        run = cli(*argv, "--state-dir", state)
        assert run.returncode in (1, 2), (argv, run.stdout, run.stderr)  # 1: the CNI error
        assert "a password in the address is refused" in run.stdout + run.stderr, run
        assert "Traceback" not in run.stderr
        assert SECRET not in run.stdout + run.stderr, run
    assert SECRET not in doctor.stdout + doctor.stderr
