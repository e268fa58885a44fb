"""CHECK: the recorded endpoint, the engine and the namespace still agree with prevResult."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from cni2cnm.engine.versions import RELEASES

from ..fakes import ALL_VERSIONS
from .conftest import DEAD, World, netns

CHECK_VERSIONS = [v for v in ALL_VERSIONS if v >= "0.4.0"]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_check_after_add(world: World, version: str) -> None:
    world.version = version
    pod = world.pod()
    res = world.add(pod)
    out = world.run("CHECK", pod.id, netns(pod), prev=res)
    if version in CHECK_VERSIONS:
        out.silent()
    else:
        assert "CHECK needs cniVersion >= 0.4.0" in out.error(1)["details"]


def test_check_on_each_engine_flavour(any_world: World) -> None:
    pod = any_world.pod()
    res = any_world.add(pod)
    any_world.run("CHECK", pod.id, netns(pod), prev=res).silent()


def test_check_without_prev_result(world: World) -> None:
    pod = world.pod()
    world.add(pod)
    assert "prevResult" in world.run("CHECK", pod.id, netns(pod)).error(7)["msg"]


def test_check_without_a_record(world: World) -> None:
    pod = world.pod()
    res = world.add(world.pod("other"))
    out = world.run("CHECK", pod.id, netns(pod), prev=res)
    assert "was ADD run?" in out.error(103)["details"]


def test_check_with_the_engine_unreachable(world: World) -> None:
    pod = world.pod()
    res = world.add(pod)
    world.run("CHECK", pod.id, netns(pod), prev=res,
              conf=world.conf(dockerHost=DEAD)).error(11)


def rename_eth0(world: World, path: str) -> None:
    ns = world.ns.get(path)
    ns.update(ns.named("eth0"), name="tmp0")  # type: ignore[arg-type]


def strip_address(world: World, path: str) -> None:
    ns = world.ns.get(path)
    ns.update(ns.named("eth0"), addresses=())  # type: ignore[arg-type]


def change_mac(world: World, path: str) -> None:
    ns = world.ns.get(path)
    ns.update(ns.named("eth0"), mac="02:00:00:00:00:99")  # type: ignore[arg-type]


# (what changes after ADD, what CHECK must say)
BREAKAGE: list[tuple[str, Callable[[World, Any, dict[str, Any]], Any], str]] = [
    ("stopped", lambda w, p, r: w.engine.stop(p.id, exit_code=137), "is exited"),
    ("removed", lambda w, p, r: w.engine.remove_container(p.id), "no longer exists"),
    ("detached", lambda w, p, r: w.engine.disconnect(p.id, "pods"), "not attached"),
    ("interface renamed", lambda w, p, r: rename_eth0(w, netns(p)), "no interface eth0"),
    ("address removed", lambda w, p, r: strip_address(w, netns(p)), "lacks addresses"),
    ("MAC changed inside", lambda w, p, r: change_mac(w, netns(p)), "has MAC 02:00:00:00:00:99"),
    ("namespace gone", lambda w, p, r: w.ns.unlink(netns(p)), "does not exist"),
]


@pytest.mark.parametrize(("change", "why"), [(c, w) for c, _, w in BREAKAGE],
                         ids=[c for c, _, _ in BREAKAGE])
def test_check_fails_when(world: World, change: str, why: str) -> None:
    pod = world.pod()
    res = world.add(pod)
    path = netns(pod)
    next(f for c, f, _ in BREAKAGE if c == change)(world, pod, res)
    assert why in world.run("CHECK", pod.id, path, prev=res).error(103)["details"]


def set_ip(prev: dict[str, Any]) -> None:
    prev["ips"][0]["address"] = "10.1.2.3/24"


def set_mac(prev: dict[str, Any]) -> None:
    prev["interfaces"][0]["mac"] = "02:00:00:00:00:01"


def set_name(prev: dict[str, Any]) -> None:
    prev["interfaces"][0]["name"] = "net9"


@pytest.mark.parametrize(("edit", "why"), [
    (set_ip, "prevResult says ['10.1.2.3/24']"),
    (set_mac, "prevResult says 02:00:00:00:00:01"),
    (set_name, "lists no interface eth0"),
], ids=["ips", "mac", "interface"])
def test_check_fails_when_prev_result_differs(world: World,
                                              edit: Callable[[dict[str, Any]], None],
                                              why: str) -> None:
    pod = world.pod()
    prev = copy.deepcopy(world.add(pod))
    edit(prev)
    assert why in world.run("CHECK", pod.id, netns(pod), prev=prev).error(103)["details"]


def test_check_after_an_engine_restart(world: World) -> None:
    # A restart without live-restore: new process, new namespace, a new endpoint.
    world.engine.api = RELEASES["28"].api  # random MACs: the new endpoint's differs from the record
    pod = world.pod()
    res = world.add(pod)
    world.engine.restart(pod.id)
    out = world.run("CHECK", pod.id, netns(pod), prev=res)
    assert "ADD recorded" in out.error(103)["details"]
