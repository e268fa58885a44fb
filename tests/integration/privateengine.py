"""A dockerd of a test's own (scripts/dockerd.sh), for tests that stop, kill or restart it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from c2ctest import SCRIPTS, Images


@dataclass
class PrivateEngine:
    dir: str
    host: str
    client: Any
    images: Images

    def _script(self, action: str) -> str:
        proc = subprocess.run(
            ["bash", str(SCRIPTS / "dockerd.sh"), action, self.dir],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, f"dockerd.sh {action}: {proc.stderr[-2000:]}"
        return proc.stdout.strip()

    def down(self) -> None:
        """The engine stops answering (dockerd is killed; its data stays)."""
        self._script("kill")

    def up(self) -> None:
        self._script("start")
        self.wait_ready()

    def restart(self) -> None:
        self._script("restart")
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def wait_running(self, container: Any, timeout: float = 60.0) -> None:
        """After a restart: until the container (restart policy always) runs again."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                container.reload()
                if container.attrs["State"]["Running"] and container.attrs["State"]["Pid"]:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{container.name} did not come back")
            time.sleep(0.2)


@contextlib.contextmanager
def private_engine() -> Iterator[PrivateEngine]:
    import docker

    d = tempfile.mkdtemp(prefix="c2cp.", dir="/tmp")
    engine = PrivateEngine(dir=d, host=f"unix://{d}/docker.sock", client=None, images=Images())
    try:
        engine.host = engine._script("start")
        subprocess.run(["bash", str(SCRIPTS / "images.sh"), engine.host], check=True,
                       capture_output=True, timeout=300)
        engine.client = docker.DockerClient(base_url=engine.host, version="auto", timeout=60)
        yield engine
    finally:
        if engine.client is not None:
            engine.client.close()
        engine._script("stop")
        if os.path.isdir(d):
            shutil.rmtree(d, ignore_errors=True)
