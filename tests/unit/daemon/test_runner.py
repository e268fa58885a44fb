"""cni2cnm.daemon.runner and logroute: a served request answers byte for byte as an in-process
run (for every answer that needs no engine) and logs to its own stderr and log file, at its own
level, even when requests run concurrently."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

from cni2cnm.cni import skel
from cni2cnm.daemon import client, wire
from cni2cnm.daemon.runner import Runner
from cni2cnm.entry import load_plugin
from cni2cnm.plugin.config import PluginConf

from ..fakes import env_for, netconf, stdin_of
from .conftest import (
    UNREACHABLE,
    parity_cases,
    request_logging,
    serving,
)


def test_answers_equal_in_process_dispatch(sockdir: Path, tmp_path: Path) -> None:
    cases = parity_cases(str(tmp_path / "state"))
    expected = []
    for _, env, data in cases:
        env = {**env, "DOCKER_HOST": UNREACHABLE}
        out = io.StringIO()
        rc = skel.dispatch(lambda env=env: load_plugin(env), env, io.BytesIO(data), out)
        expected.append((rc, out.getvalue()))
    path = sockdir / "d.sock"
    with request_logging(), serving(path):
        for (name, env, data), want in zip(cases, expected, strict=True):
            env = {**env, "DOCKER_HOST": UNREACHABLE, wire.SOCKET_ENV: str(path)}
            got = client.forward(env, data)
            assert isinstance(got, client.Reply), f"{name}: {got.reason}"  # type: ignore[union-attr]
            assert (got.exit, got.stdout) == want, name


def test_requests_log_to_their_own_stderr_at_their_own_level(sockdir: Path,
                                                             tmp_path: Path) -> None:
    conf = stdin_of(netconf("1.0.0", stateDir=str(tmp_path)))
    path = sockdir / "d.sock"
    with request_logging(), serving(path):
        def ask(**extra: str) -> client.Reply:
            env = env_for("DEL", DOCKER_HOST=UNREACHABLE, CNI_CONTAINERID="quiet",
                          **{wire.SOCKET_ENV: str(path)}, **extra)
            out = client.forward(env, conf)
            assert isinstance(out, client.Reply)
            return out

        quiet, loud = ask(), ask(CNI2CNM_LOG_LEVEL="debug")
    assert quiet.stderr == ""
    assert " DEBUG cni2cnm.skel: DEL container=quiet" in loud.stderr
    assert "nothing recorded" in loud.stderr


class TwoStepPlugin:
    """Logs, waits for the other request to have logged too, logs again."""

    config_model = PluginConf  # its config has the plugin's keys (logFile)

    def __init__(self, barrier: threading.Barrier, name: str) -> None:
        self.barrier, self.name = barrier, name

    def delete(self, env: Any, conf: Any) -> None:
        import logging

        log = logging.getLogger("cni2cnm.plugin")
        log.warning("%s before", self.name)
        self.barrier.wait()
        log.warning("%s after", self.name)
        self.barrier.wait()


def test_concurrent_requests_log_to_their_own_log_files(tmp_path: Path) -> None:
    barrier = threading.Barrier(2, timeout=20)

    class Two(Runner):
        def plugin(self, env: Any) -> Any:
            return TwoStepPlugin(barrier, env["CNI_CONTAINERID"])

    runner = Two()
    files = {name: tmp_path / f"{name}.log" for name in ("a", "b")}

    def run(name: str) -> None:
        conf = stdin_of(netconf("1.0.0", logFile=str(files[name]), stateDir=str(tmp_path)))
        assert runner(env_for("DEL", CNI_CONTAINERID=name), conf)[0] == 0

    with request_logging():
        threads = [threading.Thread(target=run, args=(n,)) for n in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    for name, path in files.items():
        lines = [ln.split(": ", 1)[1] for ln in path.read_text().splitlines()]
        assert lines == [f"{name} before", f"{name} after"], (name, lines)

