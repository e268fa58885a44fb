"""Bad inputs reach the real plugin (DockerPlugin) through the dispatcher: each gets one CNI
error object with the right code, before any engine is even asked (issue 12, part 4)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from cni2cnm import netns
from cni2cnm.cni import skel
from cni2cnm.plugin.handlers import DockerPlugin
from cni2cnm.testing.fake_netns import FakePinned

from .fakes import assert_error, env_for, netconf, stdin_of


def no_engine(*_: Any) -> Any:
    raise AssertionError("the engine must not be asked for a refused request")


class PodNamespaces(netns.Namespaces):
    """Every path is a pod's network namespace (never the host's); nothing can be opened."""

    def pin(self, path: str) -> netns.Pinned:
        return FakePinned(path, None, (1, 1))

    def is_namespace(self, path: netns.Target) -> bool:
        return True

    def is_host(self, path: netns.Target) -> bool:
        return False

    def identity(self, path: netns.Target) -> tuple[int, int] | None:
        return (1, 1)

    def open(self, path: netns.Target) -> Any:
        raise AssertionError("the namespace must not be opened for a refused request")


def run(environ: dict[str, str], doc: Any) -> tuple[int, str]:
    out = io.StringIO()
    plugin = DockerPlugin(environ=environ, engine_factory=no_engine, namespaces=PodNamespaces())
    rc = skel.dispatch(lambda: plugin, environ, io.BytesIO(stdin_of(doc)), out)
    return rc, out.getvalue()


@pytest.fixture
def state(tmp_path: Path) -> str:
    return str(tmp_path / "state")


@pytest.mark.parametrize("ifname", ["eth\udcff", "eth\x01", "eth\x7f"])
def test_ifname_not_utf8_or_with_control_characters_is_code_4(ifname: str, state: str) -> None:
    rc, out = run(env_for("ADD", CNI_IFNAME=ifname), netconf("1.0.0", stateDir=state))
    assert "CNI_IFNAME" in assert_error(rc, out, 4)["details"]


def test_netns_not_utf8_is_code_4(state: str) -> None:
    rc, out = run(env_for("ADD", CNI_NETNS="/run/netns/\udcff"), netconf("1.0.0", stateDir=state))
    assert "CNI_NETNS" in assert_error(rc, out, 4)["details"]


@pytest.mark.parametrize("infra", ["../../containers/x", "a/b", "-x", "x y", "\udcff"])
def test_infra_container_id_is_validated_like_cni_containerid(infra: str, state: str) -> None:
    args = f"IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={infra}"
    rc, out = run(env_for("ADD", CNI_ARGS=args), netconf("1.0.0", stateDir=state))
    assert "K8S_POD_INFRA_CONTAINER_ID" in assert_error(rc, out, 4)["details"]


@pytest.mark.parametrize("name", ["a/b", "../x", "-net", "net work", "nét"])
def test_network_name_outside_the_spec_characters_is_code_7(name: str, state: str) -> None:
    doc = netconf("1.0.0", stateDir=state)
    doc["name"] = name
    rc, out = run(env_for("ADD"), doc)
    assert "name" in assert_error(rc, out, 7)["details"]


@pytest.mark.parametrize("mac", ["02:42:0a:00:00:05\n", "02:42:0a:00:00:05 ", "02:42:0a:00:00"])
def test_a_mac_with_trailing_junk_is_code_7(mac: str, state: str) -> None:
    rc, out = run(env_for("ADD", CNI_ARGS=f"MAC={mac}"), netconf("1.0.0", stateDir=state))
    assert "MAC" in assert_error(rc, out, 7)["details"]


@pytest.mark.parametrize("command", ["ADD", "CHECK", "GC"])
def test_unusable_state_dir_is_code_5_for_every_command(command: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    version = "1.1.0"
    doc = netconf(version, stateDir=str(blocker / "state"))
    if command == "CHECK":
        doc["prevResult"] = {"cniVersion": version, "interfaces": [], "ips": []}
    rc, out = run(env_for(command), doc)
    assert str(blocker) in assert_error(rc, out, 5)["details"]


@pytest.mark.parametrize("key", ["stateDir", "logFile", "dockerHost", "sandboxImage",
                                 "daemonSocket"])
@pytest.mark.parametrize("value", ["/var/lib/a\0b", "/var/lib/\ud800"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_nul_or_undecodable_text_in_a_plugin_key_is_code_7(key: str, value: str, command: str,
                                                            state: str) -> None:
    doc = netconf("1.1.0", **{"stateDir": state, key: value})
    if command == "CHECK":
        doc["prevResult"] = {"cniVersion": "1.1.0"}
    rc, out = run(env_for(command), doc)
    assert key in assert_error(rc, out, 7)["details"]
