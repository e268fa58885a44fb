"""The error table (plugin/errors.py): each engine refusal type becomes its CNI code, at the
one boundary around each handler; the ADD that met it is rolled back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni2cnm.engine import errors as err
from cni2cnm.store import Store, StoreBusy

from .conftest import World, cri_args, netns

# The codes the runtime sees, decided here independently of plugin/errors.py.
EXPECTED: dict[type[err.EngineError], int] = {
    err.EngineUnavailable: 11,  # try again later
    err.EngineConfigError: 7,
    err.NotFound: 7,
    err.AlreadyExists: 101,
    err.AddressInUse: 7,
    err.Conflict: 7,
    err.InvalidRequest: 7,
    err.NotAttachable: 7,
    err.Deadline: 7,
    err.NotConnected: 100,
    err.Rejected: 100,
    err.EngineError: 100,
}


def test_every_engine_error_type_has_an_expected_code() -> None:
    defined = {obj for obj in vars(err).values()
               if isinstance(obj, type) and issubclass(obj, err.EngineError)}
    assert defined == set(EXPECTED)


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda k: k.__name__)
def test_add_maps_the_refusal_and_rolls_back(world: World, kind: type[err.EngineError]) -> None:
    pod = world.pod()
    world.engine.fail("connect", kind(f"the engine said {kind.__name__}", 500))
    doc = world.run("ADD", pod.id, netns(pod), args=cri_args(pod)).error(EXPECTED[kind])
    assert f"the engine said {kind.__name__}" in doc["details"]
    if kind is err.EngineUnavailable:
        assert "ADD can be retried" in doc["details"]
    if kind is err.Deadline:
        assert "another node" in doc["details"]
    assert list(world.inspect(pod.id).endpoints) == ["none"] and world.records() == []


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda k: k.__name__)
def test_del_maps_the_refusal_or_treats_it_as_gone(world: World,
                                                   kind: type[err.EngineError]) -> None:
    pod = world.pod()
    world.add(pod)
    world.engine.fail("disconnect", kind(f"the engine said {kind.__name__}", 500))
    out = world.run("DEL", pod.id, netns(pod))
    if kind in (err.NotConnected, err.NotFound):  # already gone / retried by name: success
        out.silent()
        assert world.records() == []
        return
    details = out.error(EXPECTED[kind])["details"]
    if kind is err.EngineUnavailable:  # recorded as pending; the engine's words are logged
        assert "recorded this DEL" in details
        assert [a.state for a in world.records()] == ["deleting"]
        return
    assert f"the engine said {kind.__name__}" in details
    assert len(world.records()) == 1


def test_an_unexpected_failure_is_999_and_still_rolled_back(world: World) -> None:
    pod = world.pod()

    def crash() -> None:
        raise RuntimeError("bug in the translation")

    world.engine.then("connect", crash)
    doc = world.run("ADD", pod.id, netns(pod)).error(999)
    assert "RuntimeError: bug in the translation" in doc["details"]
    assert list(world.inspect(pod.id).endpoints) == ["none"] and world.records() == []


def test_the_engine_is_closed_after_every_handler(world: World) -> None:
    pod = world.pod()
    res = world.add(pod)
    world.run("CHECK", pod.id, netns(pod), prev=res).silent()
    world.engine.fail("disconnect", err.Rejected("no", 500))
    world.run("DEL", pod.id, netns(pod)).error(100)
    assert world.engine.closed == len(world.factory_calls) == 3


# ---- STATUS's and GC's own columns of the table ---------------------------------------

ENGINE_DOWN_FIX = "start dockerd or fix dockerHost/DOCKER_HOST"


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda k: k.__name__)
def test_status_says_the_engine_is_not_available_with_the_fix(world: World,
                                                              kind: type[err.EngineError]
                                                              ) -> None:
    world.version = "1.1.0"
    world.engine.fail("api_version", kind(f"the engine said {kind.__name__}", 500))
    doc = world.run("STATUS", conf=world.conf()).error(50)
    fix = ("fix the config's tls settings" if kind is err.EngineConfigError
           else ENGINE_DOWN_FIX)
    assert (doc["msg"], doc["details"]) == (
        "Docker engine not available", f"the engine said {kind.__name__}; {fix}")


def test_status_of_an_unusable_store_names_stateDir(world: World, tmp_path: Path) -> None:
    world.version = "1.1.0"
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    doc = world.run("STATUS", conf=world.conf(stateDir=str(blocker / "s"))).error(50)
    assert doc["msg"] == "state store unavailable"
    assert doc["details"].endswith("; fix stateDir so ADD can record attachments")


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda k: k.__name__)
def test_gc_is_try_again_only_for_what_a_retry_fixes(world: World,
                                                     kind: type[err.EngineError]) -> None:
    world.version = "1.1.0"
    pod = world.pod()
    world.add(pod)
    world.engine.fail("disconnect", kind(f"the engine said {kind.__name__}", 500))
    out = world.run("GC", conf=world.conf())
    if kind in (err.NotConnected, err.NotFound):  # already gone / retried by name
        out.silent()
        return
    doc = out.error(11 if kind is err.EngineUnavailable else 100)
    assert (doc["msg"], doc["details"]) == (
        "GC could not finish: 1 problem(s)",
        f"{pod.id}/eth0: the engine said {kind.__name__}")


def test_gc_of_a_busy_container_is_try_again(world: World,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    world.version = "1.1.0"
    pod = world.pod()
    world.add(pod)

    @contextlib.contextmanager
    def busy(self: Store, container_id: str, timeout: float | None = None) -> Iterator[None]:
        raise StoreBusy(f"busy: {container_id} is held", "lock")
        yield

    monkeypatch.setattr(Store, "lock", busy)
    doc = world.run("GC", conf=world.conf()).error(11)
    assert doc["details"] == f"{pod.id}/eth0: busy: {pod.id} is held"
