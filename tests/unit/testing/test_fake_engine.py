"""What only the fake engine does: the swarm's refusals (no swarm here to compare with; the
real ones are in tests/integration/test_swarm.py) and its test controls. Everything else it
answers is checked against dockerd by the one contract suite,
tests/integration/test_engine_contract.py, which runs the fake without an engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cni2cnm.engine import (
    Deadline,
    EngineError,
    EngineUnavailable,
    NotAttachable,
    NotFound,
    Rejected,
    SandboxSpec,
    classify,
)
from cni2cnm.engine.versions import RELEASES
from cni2cnm.testing import FakeEngine


def node(api: tuple[int, int] = RELEASES["20.10"].api) -> tuple[FakeEngine, str]:
    engine = FakeEngine(api=api)
    engine.add_network("pods", subnet="10.240.0.0/24")
    return engine, engine.create_container("web")


def overlay_taken(e: FakeEngine, cid: str) -> None:
    e.add_overlay("ovl")
    e.create_container("other", network_mode="ovl")  # takes 10.70.0.2
    e.disconnect(cid, "none")
    e.connect(cid, "ovl", ipv4="10.70.0.2")


def not_attachable(e: FakeEngine, cid: str) -> None:
    e.add_overlay("svc", "10.71.0.0/24", attachable=False)
    e.disconnect(cid, "none")
    e.connect(cid, "svc")


# (what is asked, the typed refusal, dockerd's words)
REFUSALS: list[tuple[str, Callable[[FakeEngine, str], None], type[EngineError], str]] = [
    ("taken on an overlay", overlay_taken, Deadline, "context deadline exceeded"),
    ("not attachable", not_attachable, NotAttachable, "not manually attachable"),
]


@pytest.mark.parametrize(("act", "kind", "words"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_swarm_refusals_are_dockerd_s(act: Callable[[FakeEngine, str], None],
                                      kind: type[EngineError], words: str) -> None:
    engine, cid = node()
    with pytest.raises(EngineError) as caught:
        act(engine, cid)
    e = caught.value
    assert type(e) is kind and words in e.explanation
    assert type(classify(e.status, e.explanation)) is kind  # what the adapter makes of it


def test_sandbox_of_an_image_that_exits() -> None:
    engine = FakeEngine()
    engine.add_network("pods", subnet="10.240.0.0/24")
    engine.exiting_images["busybox"] = 1
    cid = engine.run_sandbox(SandboxSpec(name="sb", image="busybox", network="pods",
                                         labels={"k": "v"}))
    c = engine.container(cid)
    assert c is not None and c.status == "exited" and c.exit.exit_code == 1  # type: ignore[union-attr]
    assert [lc.id for lc in engine.containers_with_label("k=v")] == [cid]


def test_down_faults_and_hooks() -> None:
    engine, cid = node()
    engine.fail("container", NotFound("no", 404), nth=2)
    engine.container(cid)
    with pytest.raises(NotFound):
        engine.container(cid)
    engine.container(cid)  # once only
    engine.fail("container", Rejected("after", 500), after="disconnect")
    engine.container(cid)  # not armed yet
    engine.disconnect(cid, "none")
    with pytest.raises(Rejected):
        engine.container(cid)
    engine.then("api_version", lambda: setattr(engine, "down", True))
    assert engine.api_version() == RELEASES["20.10"].api
    with pytest.raises(EngineUnavailable):
        engine.api_version()
    assert [m for m, _ in engine.calls] == ["container"] * 4 + [
        "disconnect", "container", "api_version", "api_version"]
