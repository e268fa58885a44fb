"""A dockerd of a test's own (scripts/dockerd.sh), for tests that stop, kill or restart it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from c2ctest import SCRIPTS, Engine, Images


@dataclass
class PrivateEngine(Engine):
    """c2ctest.Engine (restart, kill, start, wait_ready) for an engine of the test's own."""

    images: Images = field(default_factory=Images)

    def down(self) -> None:
        """The engine stops answering (dockerd is killed; its data stays)."""
        self.kill()

    def up(self) -> None:
        self.start()

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


def _script(action: str, directory: str) -> str:
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "dockerd.sh"), action, directory],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, f"dockerd.sh {action}: {proc.stderr[-2000:]}"
    return proc.stdout.strip()


@contextlib.contextmanager
def private_engine() -> Iterator[PrivateEngine]:
    import docker

    d = tempfile.mkdtemp(prefix="c2cp.", dir="/tmp")
    client = None
    try:
        host = _script("start", d)
        subprocess.run(["bash", str(SCRIPTS / "images.sh"), host], check=True,
                       capture_output=True, timeout=300)
        client = docker.DockerClient(base_url=host, version="auto", timeout=60)
        yield PrivateEngine(dir=d, host=host, client=client)
    finally:
        if client is not None:
            client.close()
        _script("stop", d)
        if os.path.isdir(d):
            shutil.rmtree(d, ignore_errors=True)
