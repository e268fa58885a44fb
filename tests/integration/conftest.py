"""Fixtures for integration tests that need a real Docker engine.

Every test under tests/integration is marked ``integration``.  The engine is the one at
``DOCKER_HOST`` (``sudo scripts/test.sh`` starts a throwaway one).  When it does not answer the
tests are skipped, except under ``CI=true`` where they fail: CI must never pass by skipping.

Fixtures: ``docker_host``, ``docker_client``, ``images`` (session), ``engine`` (session,
restart/kill for fault tests), ``resources`` (per test, see c2ctest.Resources), ``peng`` /
``pres`` / ``pnet`` (an engine of the module's own, privateengine.py, with its resources and a
network: for tests that kill or restart it).  Helpers such as
``pause_container`` live in c2ctest.py: ``from c2ctest import pause_container``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from c2ctest import (
    SCRIPTS,
    Engine,
    Images,
    Resources,
    mark_tests_under,
    sweep_session,
    unavailable,
)
from pluginrun import Plugin, kill_started

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_tests_under(HERE, items, pytest.mark.integration)


@pytest.fixture(autouse=True)
def no_plugin_left() -> Iterator[None]:
    """No plugin process a test started (stopped at a test point, say) outlives the test,
    whether it passed or failed."""
    yield
    kill_started()


@pytest.fixture(scope="session")
def docker_host() -> str:
    """DOCKER_HOST of an engine that answers (skip, or fail under CI, otherwise)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        unavailable(
            "DOCKER_HOST is not set: run `sudo scripts/test.sh`, or start an engine "
            "with `sudo scripts/dockerd.sh start DIR` and export DOCKER_HOST"
        )
    try:
        import docker
    except ImportError as exc:
        unavailable(f"the docker SDK is not installed ({exc}): run scripts/bootstrap.sh")
    try:
        client = docker.DockerClient(base_url=host, version="auto", timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        unavailable(f"no Docker engine answers at DOCKER_HOST={host}: {exc}")
    return host


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=docker_host, version="auto", timeout=60)
    yield client
    sweep_session(client)
    client.close()


def _image_exists(client: Any, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture(scope="session")
def images(docker_client: Any, docker_host: str) -> Images:
    """The local test images, built with scripts/images.sh when missing (never pulled)."""
    imgs = Images()
    if not all(_image_exists(docker_client, n) for n in (imgs.busybox, imgs.pause)):
        proc = subprocess.run(
            ["bash", str(SCRIPTS / "images.sh"), docker_host],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"scripts/images.sh failed ({proc.returncode}):\n{proc.stderr}", pytrace=False
            )
    for n in (imgs.busybox, imgs.pause):
        if not _image_exists(docker_client, n):
            pytest.fail(f"image {n} is missing after scripts/images.sh", pytrace=False)
    return imgs


@pytest.fixture
def engine(docker_host: str, docker_client: Any, resources: Resources) -> Iterator[Engine]:
    """Control of the engine for fault tests (restart, kill, start); needs
    CNI2CNM_TEST_ENGINE_DIR (set by scripts/test.sh for the engine it starts).  An engine left
    down by the test is started again at teardown, before ``resources`` cleans up (that is why
    this fixture depends on ``resources``)."""
    d = os.environ.get("CNI2CNM_TEST_ENGINE_DIR", "")
    if not d or not Path(d, "dockerd.log").exists():
        unavailable(
            "CNI2CNM_TEST_ENGINE_DIR is not set to a scripts/dockerd.sh engine "
            "directory: fault tests need the engine started by scripts/test.sh"
        )
    eng = Engine(dir=d, host=docker_host, client=docker_client)
    yield eng
    eng.ensure_up()


@pytest.fixture
def resources(docker_client: Any) -> Iterator[Resources]:
    """Per-test networks, containers, netns and directories, all removed at teardown."""
    with Resources(docker_client) as res:
        yield res


@pytest.fixture
def net(resources: Resources) -> Any:
    """A bridge network with its own private subnet, removed at teardown."""
    return resources.network()


@pytest.fixture
def plugin(docker_host: str, resources: Resources, net: Any) -> Plugin:
    """A runtime's view of a cni2cnm config for `net`, with a state dir of the test's own
    (modules that need another config define their own `plugin`)."""
    return Plugin.on(docker_host, resources, net.name)


# ---- an engine of a module's own, for tests that kill and restart it ---------------------


@pytest.fixture(scope="module")
def peng(docker_host: str) -> Iterator[Any]:
    """A private engine (privateengine.py) per module: its tests kill and restart it."""
    from privateengine import private_engine

    with private_engine() as engine:
        yield engine


@pytest.fixture
def pres(peng: Any) -> Iterator[Resources]:
    """`resources` on the private engine, which it starts again if a test left it down; the
    proxy sandboxes a failed test left are removed too."""
    with Resources(peng.client) as res:
        try:
            yield res
        finally:
            try:
                peng.client.ping()
            except Exception:
                peng.up()
            for c in peng.client.containers.list(all=True,
                                                 filters={"label": "io.cni2cnm.sandbox=true"}):
                c.remove(force=True)


@pytest.fixture
def pnet(pres: Resources) -> Any:
    return pres.network()
