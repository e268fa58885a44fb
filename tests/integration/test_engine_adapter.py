"""What only the real adapter (cni2cnm.engine.Engine) does: how it makes sandboxes and how it
reports an engine it cannot use. The engine calls themselves (models, refusals, names, MACs)
are checked on dockerd and on the fake alike by test_engine_contract.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from c2ctest import unique_name

from cni2cnm.engine import (
    Engine,
    EngineConfigError,
    EngineUnavailable,
    SandboxSpec,
    TLSSettings,
)

pytestmark = pytest.mark.own_modes  # no plugin runs here: nothing to repeat through a daemon


@pytest.fixture
def eng(docker_host: str) -> Iterator[Engine]:
    e = Engine(docker_host, timeout=30)
    yield e
    e.close()


def test_sandbox_is_hardened(eng: Engine, resources: Any, images: Any, net: Any,
                             docker_client: Any) -> None:
    name = unique_name("sandbox")
    resources.add_cleanup(lambda: eng.remove_container(name))
    cid = eng.run_sandbox(SandboxSpec(name=name, image=images.pause, network=net.name,
                                      labels={"c2ct.test": "yes"}, pids_limit=16,
                                      memory=16 << 20))
    raw = docker_client.api.inspect_container(cid)
    host = raw["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"] and raw["State"]["Running"]
    assert (host["PidsLimit"], host["Memory"]) == (16, 16 << 20)


def test_unreachable_engine_and_unusable_tls(tmp_path: Any) -> None:
    down = Engine(f"unix://{tmp_path}/no.sock", timeout=2)
    with pytest.raises(EngineUnavailable):
        down.version()
    missing = Engine("tcp://127.0.0.1:9", timeout=2, tls=TLSSettings(ca=str(tmp_path / "ca.pem")))
    with pytest.raises(EngineConfigError) as e:
        missing.version()
    assert str(tmp_path / "ca.pem") in e.value.explanation
