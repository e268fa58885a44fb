"""One dual-stack result rendered in all seven spec versions, compared with hand-written golden
files (tests/golden/result-<version>.json) and checked field by field against each version's shape.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cni2cnm.cni.errors import CNIError
from cni2cnm.cni.version import SUPPORTED_VERSIONS

from .fakes import (
    ALL_VERSIONS,
    dispatch,
    dual_stack_result,
    env_for,
    golden,
    netconf,
    one_document,
    stdin_of,
)

LEGACY = ("0.1.0", "0.2.0")
INTERFACES_WITH_IP_VERSION = ("0.3.0", "0.3.1", "0.4.0")

DNS_KEYS = {"nameservers", "domain", "search", "options"}
IFACE_KEYS = {"name", "mac", "sandbox"}
IFACE_KEYS_110 = IFACE_KEYS | {"mtu", "socketPath", "pciID"}
ROUTE_KEYS = {"dst", "gw"}
ROUTE_KEYS_110 = ROUTE_KEYS | {"mtu", "advmss", "priority", "table", "scope"}


def check_dns(dns: dict[str, Any]) -> None:
    assert set(dns) <= DNS_KEYS
    for k in ("nameservers", "search", "options"):
        if k in dns:
            assert isinstance(dns[k], list) and all(isinstance(x, str) for x in dns[k])
    if "domain" in dns:
        assert isinstance(dns["domain"], str)


def check_route(route: dict[str, Any], allowed: set[str]) -> None:
    assert set(route) <= allowed, f"route has keys {set(route) - allowed} not in this version"
    ipaddress.ip_network(route["dst"], strict=False)
    if "gw" in route:
        ipaddress.ip_address(route["gw"])
    for k in allowed - ROUTE_KEYS:
        if k in route:
            assert type(route[k]) is int and route[k] >= 0


def check_shape(doc: dict[str, Any], version: str) -> None:
    """The spec's result schema for `version`, key by key."""
    assert doc["cniVersion"] == version
    if version in LEGACY:
        assert set(doc) <= {"cniVersion", "ip4", "ip6", "dns"}
        for key, family in (("ip4", 4), ("ip6", 6)):
            if key not in doc:
                continue
            block = doc[key]
            assert set(block) <= {"ip", "gateway", "routes"}
            assert "/" in block["ip"]
            assert ipaddress.ip_interface(block["ip"]).version == family
            if "gateway" in block:
                assert ipaddress.ip_address(block["gateway"]).version == family
            for r in block.get("routes", []):
                check_route(r, ROUTE_KEYS)
                assert ipaddress.ip_network(r["dst"], strict=False).version == family
    else:
        assert set(doc) <= {"cniVersion", "interfaces", "ips", "routes", "dns"}
        newest = version == "1.1.0"
        for iface in doc.get("interfaces", []):
            assert set(iface) <= (IFACE_KEYS_110 if newest else IFACE_KEYS)
            assert isinstance(iface["name"], str)
        for ip in doc.get("ips", []):
            allowed = {"address", "gateway", "interface"}
            if version in INTERFACES_WITH_IP_VERSION:
                allowed |= {"version"}
                assert ip["version"] in ("4", "6")
                assert ip["version"] == str(ipaddress.ip_interface(ip["address"]).version)
            else:
                assert "version" not in ip
            assert set(ip) <= allowed
            assert "/" in ip["address"]
            if "interface" in ip:
                assert type(ip["interface"]) is int
                assert 0 <= ip["interface"] < len(doc["interfaces"])
        for r in doc.get("routes", []):
            check_route(r, ROUTE_KEYS_110 if newest else ROUTE_KEYS)
    if "dns" in doc:
        check_dns(doc["dns"])


def test_all_seven_versions_have_a_golden_file() -> None:
    assert tuple(SUPPORTED_VERSIONS) == ALL_VERSIONS
    for v in ALL_VERSIONS:
        assert golden(v)["cniVersion"] == v


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_golden_files_have_the_spec_shape(version: str) -> None:
    # Guards the hand-written files themselves against a typo.
    check_shape(golden(version), version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_render_matches_golden(version: str) -> None:
    rendered = dual_stack_result().render(version)
    check_shape(rendered, version)
    assert rendered == golden(version)


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_keeps_first_address_of_each_family_and_routes_by_dst_family(
    version: str,
) -> None:
    doc = dual_stack_result().render(version)
    assert doc["ip4"]["ip"] == "10.22.0.5/16"  # not the second IPv4 10.22.0.6
    assert doc["ip6"]["ip"] == "fd00:dead:beef::5/64"
    assert doc["ip4"]["gateway"] == "10.22.0.1"
    assert doc["ip6"]["gateway"] == "fd00:dead:beef::1"
    assert [r["dst"] for r in doc["ip4"]["routes"]] == ["0.0.0.0/0"]
    assert doc["ip6"]["routes"] == [{"dst": "fd00:cafe::/48", "gw": "fd00:dead:beef::1"}]
    assert "interfaces" not in doc and "ips" not in doc and "routes" not in doc


@pytest.mark.parametrize("version", INTERFACES_WITH_IP_VERSION)
def test_03x_04_ips_carry_version_strings(version: str) -> None:
    doc = dual_stack_result().render(version)
    assert [ip["version"] for ip in doc["ips"]] == ["4", "6", "4"]
    assert doc["interfaces"] == [
        {"name": "eth0", "mac": "02:42:0a:16:00:05", "sandbox": "/var/run/netns/cni-1234"}
    ]
    assert all(set(r) == {"dst", "gw"} for r in doc["routes"])


def test_100_drops_ip_version_and_110_fields() -> None:
    doc = dual_stack_result().render("1.0.0")
    assert all("version" not in ip for ip in doc["ips"])
    assert set(doc["interfaces"][0]) == {"name", "mac", "sandbox"}
    assert all(set(r) <= {"dst", "gw"} for r in doc["routes"])


def test_110_has_interface_and_route_additions_including_zero_scope() -> None:
    doc = dual_stack_result().render("1.1.0")
    iface = doc["interfaces"][0]
    assert iface["mtu"] == 1450
    assert iface["socketPath"] == "/run/vhost-user/eth0.sock"
    assert iface["pciID"] == "0000:00:1f.6"
    v6 = doc["routes"][1]
    assert (v6["mtu"], v6["advmss"], v6["priority"], v6["table"]) == (1400, 1340, 100, 100)
    assert v6["scope"] == 0  # 0 (global) is a value, not "absent"
    assert all("version" not in ip for ip in doc["ips"])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_prints_the_golden_result_in_the_requested_version(version: str) -> None:
    rc, out = dispatch(env_for("ADD"), stdin_of(netconf(version)))
    assert rc == 0
    doc = one_document(out)
    assert doc["cniVersion"] == version
    assert doc == golden(version)


@pytest.mark.parametrize("version", ["0.5.0", "1.2.0", "", "1.0", "v1.0.0", "1.0.0 "])
def test_render_of_unsupported_version_is_code_1(version: str) -> None:
    with pytest.raises(CNIError) as ei:
        dual_stack_result().render(version)
    assert ei.value.code == 1
