"""The daemon's keeper (daemon/keeper.py) over the fake engine: it finishes pending DELs and
clears ended proxy sandboxes of every stateDir the daemon served, without any request."""

from __future__ import annotations

from cni2cnm.daemon.keeper import Keeper
from cni2cnm.engine import EngineSettings
from cni2cnm.plugin.config import PluginConf

from .conftest import HOST, World
from .test_pending import pending_del
from .test_proxy_mode import NS, sandboxes


def keeper_of(world: World) -> Keeper:
    keeper = Keeper(world.engine_factory, namespaces=world.ns)
    keeper.remember(PluginConf.model_validate(world.conf()), {"DOCKER_HOST": HOST})
    return keeper


def test_the_keeper_finishes_a_pending_del_once_the_engine_answers(world: World) -> None:
    pod, _ = pending_del(world)
    keeper = keeper_of(world)
    assert keeper.watching()
    world.engine.down = True
    keeper.tick()
    assert [a.state for a in world.records()] == ["deleting"] and keeper.watching()
    world.engine.down = False
    keeper.tick()
    assert world.records() == [] and "pods" not in world.inspect(pod.id).endpoints
    assert not keeper.watching()  # nothing left: an on-demand daemon may go idle


def test_the_keeper_removes_the_interface_of_an_ended_sandbox(world: World) -> None:
    world.ns.create(NS)
    keeper = keeper_of(world)
    world.run("ADD", "cnitool-" + "7c" * 10, NS).ok()
    keeper.tick()
    assert keeper.watching() and "eth0" in world.links(NS)  # a live proxy pod: kept alive
    world.engine.stop(sandboxes(world)[0].id)
    keeper.tick()
    assert set(world.links(NS)) == {"lo"}
    assert [a.state for a in world.records()] == ["sandbox-gone"]


def test_the_daemon_remembers_each_requests_state_dir_and_leaves_the_pass_to_the_keeper(
        world: World) -> None:
    import json

    from cni2cnm.daemon.runner import Runner

    pod, _ = pending_del(world)
    keeper = Keeper(world.engine_factory, namespaces=world.ns)
    runner = Runner(world.engine_factory, keeper=keeper)
    assert runner.plugin({}).reconciles is False  # type: ignore[attr-defined]
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin", "DOCKER_HOST": HOST}
    status, out, _ = runner(env, json.dumps(world.conf(cniVersion="1.1.0")).encode())
    assert (status, out) == (0, "")
    assert [a.state for a in world.records()] == ["deleting"]  # the request did not do it
    keeper.tick()
    assert world.records() == [] and "pods" not in world.inspect(pod.id).endpoints


def test_a_state_dir_whose_store_is_gone_is_forgotten_never_created(world: World,
                                                                     tmp_path: object) -> None:
    import os
    import shutil

    keeper = keeper_of(world)
    world.add(world.pod())
    keeper.tick()
    shutil.rmtree(world.state_dir)  # a test's (or a removed runtime's) stateDir
    keeper.tick()
    assert not os.path.exists(world.state_dir) and not keeper.watching()
    assert keeper._confs == {}


def test_the_keepers_engine_calls_are_short(world: World) -> None:
    seen: list[float] = []

    def factory(settings: EngineSettings, environ: dict[str, str], recorded: str = "") -> object:
        seen.append(settings.timeout)
        return world.engine_factory(settings, environ, recorded)

    pending_del(world)
    keeper = Keeper(factory, namespaces=world.ns)  # type: ignore[arg-type]
    keeper.remember(PluginConf.model_validate(world.conf(dockerTimeout=45)), {})
    keeper.tick()
    assert seen and set(seen) == {3.0} and world.records() == []


def test_a_state_dir_whose_store_is_not_made_yet_is_kept(world: World, tmp_path: object) -> None:
    import os

    from cni2cnm.plugin.config import PluginConf as Conf

    keeper = Keeper(world.engine_factory, namespaces=world.ns)
    keeper.remember(Conf.model_validate(world.conf()), {"DOCKER_HOST": HOST})
    keeper.tick()  # the first ADD's request named it; its directory and store come next
    assert not os.path.exists(world.state_dir)
    os.makedirs(world.state_dir)
    keeper.tick()
    assert not os.path.exists(os.path.join(world.state_dir, "attachments.db"))
    pod, _ = pending_del(world)
    keeper.tick()
    assert world.records() == [] and "pods" not in world.inspect(pod.id).endpoints
