"""The error table (plugin/errors.py): each engine refusal type becomes its CNI code, at the
one boundary around each handler; the ADD that met it is rolled back."""

from __future__ import annotations

import pytest

from cni2cnm.engine import errors as err

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
