"""The plugin executable (cni2cnm.entry and the file `cni2cnm install` places), run as a
process as a runtime runs it: forwarding imports only the standard library, answers equal
in-process ones, and without a daemon the plugin runs in-process. tests/integration/
test_daemon.py does the same against a real engine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cni2cnm import __version__
from cni2cnm.daemon import wire

from ..fakes import env_for, netconf, stdin_of
from ..test_skel import UnreadableStdin
from .conftest import (
    UNREACHABLE,
    Recorder,
    parity_cases,
    request_logging,
    serving,
)

HEAVY = ("docker", "pydantic", "pydantic_core", "click", "requests", "urllib3")


# Not needed to forward a request either, and each costs start-up time (site: up to 15 ms;
# socket and json with re and enum: ~12 ms).
LEAN = ("site", "socket", "json", "re", "enum", "typing", "selectors")


def executable_env(command: str = "ADD", sock: Path | str = "", **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_HOST": UNREACHABLE,
           wire.SOCKET_ENV: str(sock), wire.MODE_ENV: "manual", **env_for(command)}
    env.update(extra)
    return env


def run_executable(env: dict[str, str], data: bytes, *pyflags: str,
                   code: str = "from cni2cnm.entry import main; main()"
                   ) -> subprocess.CompletedProcess[bytes]:
    """The plugin executable as a runtime runs it (env + stdin), in a fresh interpreter."""
    return subprocess.run([sys.executable, *pyflags, "-c", code], input=data, env=env,
                          capture_output=True, timeout=60, check=False)


def test_executable_gives_the_same_bytes_through_the_daemon(sockdir: Path,
                                                            tmp_path: Path) -> None:
    path = sockdir / "d.sock"
    with request_logging(), serving(path) as server:
        for name, env, data in parity_cases(str(tmp_path / "state")):
            inproc = run_executable(executable_env(**{**env, wire.SOCKET_ENV: ""}), data)
            served = run_executable(executable_env(**{**env, wire.SOCKET_ENV: str(path)}), data)
            assert (served.returncode, served.stdout) == (inproc.returncode, inproc.stdout), name
            assert b"running in-process" not in served.stderr, name
        assert server.served == len(parity_cases(""))


def test_forwarding_imports_only_the_standard_library(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    recorder = Recorder(reply=(1, '{"cniVersion": "1.0.0", "code": 7, "msg": "m"}\n', "log\n"))
    probe = ("import sys\nfrom cni2cnm.entry import run_plugin\nrc = run_plugin()\n"
             f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
             "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\nsys.exit(rc)\n")
    with serving(path, recorder):
        proc = run_executable(executable_env(sock=path), b"{}", code=probe)
        timed = run_executable(executable_env(sock=path), b"{}", "-X", "importtime")
    assert proc.returncode == 1
    assert proc.stdout == b'{"cniVersion": "1.0.0", "code": 7, "msg": "m"}\n'
    assert proc.stderr.decode().splitlines() == ["log", "HEAVY="]
    imported = {line.split("|")[-1].strip() for line in timed.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "cni2cnm.daemon.client" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}, sorted(imported)
    assert timed.returncode == 1 and len(recorder.requests) == 2


def test_installed_plugin_forwards_without_site_socket_or_json(sockdir: Path,
                                                              tmp_path: Path) -> None:
    """The file `cni2cnm install` places: a forwarded request imports none of the modules that
    cost start-up time; in-process and CLI runs get site-packages back and work."""
    from cni2cnm.ops.install import wrapper_text

    plugin = tmp_path / "cni2cnm"
    plugin.write_text(wrapper_text())
    plugin.chmod(0o755)
    path = sockdir / "d.sock"
    recorder = Recorder(reply=(0, '{"cniVersion": "1.0.0"}\n', ""))
    conf = b'{"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm"}'
    with serving(path, recorder):
        timed = subprocess.run([sys.executable, "-IS", "-X", "importtime", str(plugin)],
                               input=conf, env=executable_env(sock=path), capture_output=True,
                               timeout=60, check=False)
    assert timed.returncode == 0 and timed.stdout == b'{"cniVersion": "1.0.0"}\n'
    imported = {line.split("|")[-1].strip() for line in timed.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "cni2cnm.daemon.client" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY + LEAN}, sorted(imported)
    # no daemon: in-process, with pydantic from site-packages (an invalid name is code 7)
    bad = subprocess.run([str(plugin)], input=stdin_of(netconf("1.0.0", name="")),
                         env=executable_env(sock=""), capture_output=True, timeout=60)
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 7, bad.stderr
    cli = subprocess.run([str(plugin), "version"], env={"PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and cli.stdout.startswith(f"cni2cnm {__version__}\n")


def test_without_a_daemon_the_plugin_runs_in_process(sockdir: Path) -> None:
    probe = ("import sys\nfrom cni2cnm.entry import run_plugin\nrc = run_plugin()\n"
             "sys.stderr.write('PYDANTIC=%s\\n' % ('pydantic' in sys.modules))\nsys.exit(rc)\n")
    stale = sockdir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))
    proc = run_executable(executable_env(sock=stale), stdin_of(netconf("1.0.0", name="")),
                          code=probe)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 7
    assert f"WARNING cni2cnm.entry: daemon socket {stale} does not accept connections" in err
    assert "PYDANTIC=True" in err


def test_version_never_contacts_the_daemon(sockdir: Path) -> None:
    path = sockdir / "d.sock"
    recorder = Recorder()
    with serving(path, recorder) as server:
        proc = run_executable(executable_env("VERSION", sock=path), b'{"cniVersion": "0.4.0"}')
        assert server.served == 0
    assert proc.returncode == 0 and json.loads(proc.stdout)["cniVersion"] == "0.4.0"
    assert recorder.requests == []


def test_unreadable_stdin_is_reported_as_in_process(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from cni2cnm import entry

    class Stdin:
        buffer = UnreadableStdin()

    for k, v in env_for("ADD", **{wire.SOCKET_ENV: "/nonexistent.sock"}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "stdin", Stdin())
    rc = entry.run_plugin()
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["code"] == 5 and "Input/output error" in doc["details"]

