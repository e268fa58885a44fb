"""What the runtime asks for: runtimeConfig (declared capabilities) over args.cni over
CNI_ARGS, for addresses, MAC, aliases, driver options and DNS."""

from __future__ import annotations

from typing import Any

import pytest

from cni2cnm.engine import IFNAME_OPTION
from cni2cnm.engine.versions import RELEASES

from .conftest import World, netns


def add_with(world: World, cni_args: str = "", **conf: Any) -> dict[str, Any]:
    pod = world.pod()
    return world.run("ADD", pod.id, netns(pod), args=cni_args, conf=world.conf(**conf)).ok()


def address(res: dict[str, Any]) -> str:
    return str(res["ips"][0]["address"])


def test_runtime_config_wins_over_args_cni_and_cni_args(world: World) -> None:
    res = add_with(world, "IP=10.240.0.30", capabilities={"ips": True},
                   runtimeConfig={"ips": ["10.240.0.10/24"]},
                   args={"cni": {"ips": ["10.240.0.20"]}})
    assert address(res) == "10.240.0.10/24"


def test_runtime_config_without_the_capability_is_ignored(world: World) -> None:
    res = add_with(world, "IP=10.240.0.30", runtimeConfig={"ips": ["10.240.0.10/24"]},
                   args={"cni": {"ips": ["10.240.0.20"]}})
    assert address(res) == "10.240.0.20/24"


def test_args_cni_wins_over_cni_args(world: World) -> None:
    assert address(add_with(world, "IP=10.240.0.30", args={"cni": {"ips": ["10.240.0.20"]}})
                   ) == "10.240.0.20/24"


def test_cni_args_ip(world: World) -> None:
    assert address(add_with(world, "IP=10.240.0.30")) == "10.240.0.30/24"


def test_no_request_gets_the_next_free_address(world: World) -> None:
    assert address(add_with(world)) == "10.240.0.2/24"


@pytest.mark.parametrize(("args", "conf", "why"), [
    ("", {"args": {"cni": {"ips": "10.240.0.20"}}}, "must be a list"),
    ("", {"args": {"cni": {"ips": [7]}}}, "must be a list"),
    ("IP=10.240.0.300", {}, "is not an IP address"),
    ("IP=10.240.0.3,10.240.0.4", {}, "one IPv4 address"),
    ("IP=fd00::3,fd00::4", {}, "one IPv6 address"),
    ("MAC=02:42:zz:00:00:01", {}, "is not a MAC address"),
    ("", {"capabilities": {"mac": True}, "runtimeConfig": {"mac": "nope"}}, "runtimeConfig.mac"),
])
def test_invalid_requests_are_refused_before_any_engine_call(
        world: World, args: str, conf: dict[str, Any], why: str) -> None:
    pod = world.pod()
    before = len(world.engine.calls)
    out = world.run("ADD", pod.id, netns(pod), args=args, conf=world.conf(**conf))
    assert why in out.error(7)["details"]
    assert world.engine.calls[before:] == [] and world.networks_of(pod.id) == ["none"]


@pytest.mark.parametrize(("args", "conf", "want"), [
    ("MAC=02:42:00:00:00:03", {"args": {"cni": {"mac": "02:42:00:00:00:02"}},
                               "capabilities": {"mac": True},
                               "runtimeConfig": {"mac": "02:42:00:00:00:01"}}, "02:42:00:00:00:01"),
    ("MAC=02:42:00:00:00:03", {"args": {"cni": {"mac": "02:42:00:00:00:02"}},
                               "runtimeConfig": {"mac": "02:42:00:00:00:01"}}, "02:42:00:00:00:02"),
    ("MAC=02:42:AA:00:00:03", {}, "02:42:aa:00:00:03"),
])
def test_mac_precedence_on_an_engine_that_applies_it(world: World, args: str,
                                                     conf: dict[str, Any], want: str) -> None:
    world.engine.api = RELEASES["29.3"].api
    res = add_with(world, args, **conf)
    assert res["interfaces"][0]["mac"] == want
    assert world.inspect(world.records()[0].docker_id).endpoints["pods"].mac == want


def test_aliases_from_config_and_runtime_config_merged(world: World) -> None:
    pod = world.pod()
    conf = world.conf(aliases=["db", "primary"], capabilities={"aliases": True},
                      runtimeConfig={"aliases": ["primary", "pod-alias"]})
    world.run("ADD", pod.id, netns(pod), conf=conf).ok()
    assert world.inspect(pod.id).endpoints["pods"].aliases == ("db", "primary", "pod-alias")


def test_runtime_aliases_need_the_capability(world: World) -> None:
    pod = world.pod()
    conf = world.conf(aliases=["db"], runtimeConfig={"aliases": ["pod-alias"]})
    world.run("ADD", pod.id, netns(pod), conf=conf).ok()
    assert world.inspect(pod.id).endpoints["pods"].aliases == ("db",)


@pytest.mark.parametrize(("api", "ifname_opt"),
                         [(RELEASES["20.10"].api, False), (RELEASES["28"].api, True)])
def test_driver_options_and_the_ifname_option(world: World, api: tuple[int, int],
                                              ifname_opt: bool) -> None:
    world.engine.api = api
    seen: list[dict[str, str]] = []
    real_connect = world.engine.connect

    def connect(container: str, network: str, **kw: Any) -> None:
        seen.append(dict(kw.get("driver_opts") or {}))
        real_connect(container, network, **kw)

    world.engine.connect = connect  # type: ignore[method-assign]
    add_with(world, driverOpts={"com.example.opt": "1"})
    want = {"com.example.opt": "1", **({IFNAME_OPTION: "eth0"} if ifname_opt else {})}
    assert seen == [want]


def test_dns_capability_wins_over_the_config(world: World) -> None:
    res = add_with(world, dns={"nameservers": ["9.9.9.9"]}, capabilities={"dns": True},
                   runtimeConfig={"dns": {"servers": ["10.96.0.10"], "searches": ["svc"]}})
    assert res["dns"] == {"nameservers": ["10.96.0.10"], "search": ["svc"]}


def test_dns_without_the_capability_is_the_config_s(world: World) -> None:
    res = add_with(world, dns={"nameservers": ["9.9.9.9"]},
                   runtimeConfig={"dns": {"servers": ["10.96.0.10"]}})
    assert res["dns"] == {"nameservers": ["9.9.9.9"]}
