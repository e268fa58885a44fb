"""prevResult parsing: results of every spec version into the internal (1.1.0) model."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cni2cnm.cni.errors import CNIError
from cni2cnm.cni.result import Result, parse_result

from .fakes import ALL_VERSIONS, dual_stack_result, golden

LEGACY = ("0.1.0", "0.2.0")
WITH_IP_VERSION = ("0.3.0", "0.3.1", "0.4.0")
CURRENT = ("1.0.0", "1.1.0")


def ips(res: Result) -> list[tuple[str, str | None, int | None]]:
    return [(ip.address, ip.gateway, ip.interface) for ip in res.ips]


def routes(res: Result) -> list[tuple[str, str | None]]:
    return [(r.dst, r.gw) for r in res.routes]


def invalid(doc: Any, version: str) -> CNIError:
    with pytest.raises(CNIError) as ei:
        parse_result(doc, version)
    assert ei.value.code == 7, repr(ei.value)
    return ei.value


# ---- every version parses -----------------------------------------------------------------

@pytest.mark.parametrize("version", LEGACY)
def test_legacy_ip4_ip6_shape(version: str) -> None:
    doc = {
        "cniVersion": version,
        "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}]},
        "ip6": {"ip": "2001:db8::5/64", "gateway": "2001:db8::1",
                "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
        "dns": {"nameservers": ["10.1.0.1"], "domain": "example.org"},
    }
    res = parse_result(doc, version)
    assert ips(res) == [("10.1.0.5/16", "10.1.0.1", None), ("2001:db8::5/64", "2001:db8::1", None)]
    assert routes(res) == [("0.0.0.0/0", None), ("192.168.0.0/16", "10.1.0.254"),
                           ("::/0", "2001:db8::1")]
    assert res.interfaces == []
    assert res.dns.nameservers == ["10.1.0.1"] and res.dns.domain == "example.org"


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_ip6_only_and_empty(version: str) -> None:
    res = parse_result({"cniVersion": version, "ip6": {"ip": "fd00::2/64"}}, version)
    assert ips(res) == [("fd00::2/64", None, None)]
    empty = parse_result({"cniVersion": version}, version)
    assert empty.ips == [] and empty.routes == []


@pytest.mark.parametrize("version", WITH_IP_VERSION)
def test_03x_04_with_ip_versions(version: str) -> None:
    doc = {
        "cniVersion": version,
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "eth0", "mac": "02:42:ac:11:00:02", "sandbox": "/var/run/netns/blue"},
        ],
        "ips": [
            {"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
            {"version": "6", "address": "2001:db8::5/64", "interface": 1},
        ],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    }
    res = parse_result(doc, version)
    assert [(i.name, i.mac, i.sandbox) for i in res.interfaces] == [
        ("cni0", "00:11:22:33:44:55", None),
        ("eth0", "02:42:ac:11:00:02", "/var/run/netns/blue"),
    ]
    assert ips(res) == [("10.1.0.5/16", "10.1.0.1", 1), ("2001:db8::5/64", None, 1)]
    assert routes(res) == [("0.0.0.0/0", None)]


@pytest.mark.parametrize("version", CURRENT)
def test_1x_without_ip_versions(version: str) -> None:
    doc = {
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "mac": "02:42:ac:11:00:02", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "172.17.0.2/16", "gateway": "172.17.0.1", "interface": 0},
                {"address": "fd00::2/64", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "172.17.0.1"}],
    }
    res = parse_result(doc, version)
    assert ips(res) == [("172.17.0.2/16", "172.17.0.1", 0), ("fd00::2/64", None, 0)]
    assert routes(res) == [("0.0.0.0/0", "172.17.0.1")]


def test_110_fields_are_parsed() -> None:
    res = parse_result(golden("1.1.0"), "1.1.0")
    assert res == dual_stack_result()


def test_ipam_style_result_without_interfaces() -> None:
    # Delegated IPAM results omit `interfaces` and `ips[].interface` (SPEC.md section 5).
    res = parse_result({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/16"}]}, "1.0.0")
    assert ips(res) == [("10.1.0.5/16", None, None)]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_golden_document_parses_and_renders_back(version: str) -> None:
    doc = golden(version)
    assert parse_result(doc, version).render(version) == doc


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_round_trip_render_parse_render(version: str) -> None:
    first = dual_stack_result().render(version)
    again = parse_result(copy.deepcopy(first), version).render(version)
    assert again == first


# ---- invalid prevResults are code 7 ------------------------------------------------------

@pytest.mark.parametrize("doc", [[], "x", 5, None, True, [{"ips": []}]])
@pytest.mark.parametrize("version", ["0.2.0", "1.0.0"])
def test_not_an_object(doc: Any, version: str) -> None:
    invalid(doc, version)


BAD_CIDRS = ["10.1.0.5", "10.1.0.300/24", "10.1.0.5/33", "fd00::5/129", "garbage", ""]


@pytest.mark.parametrize("address", BAD_CIDRS)
@pytest.mark.parametrize("version", ["0.3.1", "1.0.0", "1.1.0"])
def test_bad_ip_address(address: str, version: str) -> None:
    invalid({"cniVersion": version, "ips": [{"address": address}]}, version)


@pytest.mark.parametrize("address", BAD_CIDRS)
@pytest.mark.parametrize("version", LEGACY)
def test_bad_legacy_ip(address: str, version: str) -> None:
    invalid({"cniVersion": version, "ip4": {"ip": address}}, version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_bad_route_dst_and_gateways(version: str) -> None:
    if version in LEGACY:
        docs = [
            {"ip4": {"ip": "10.1.0.5/16", "routes": [{"dst": "default"}]}},
            {"ip4": {"ip": "10.1.0.5/16", "routes": [{"dst": "0.0.0.0/0", "gw": "10.1"}]}},
            {"ip4": {"ip": "10.1.0.5/16", "gateway": "not-an-ip"}},
        ]
    else:
        docs = [
            {"routes": [{"dst": "default"}]},
            {"routes": [{"dst": "0.0.0.0/0", "gw": "10.1"}]},
            {"ips": [{"address": "10.1.0.5/16", "gateway": "not-an-ip"}]},
        ]
    for doc in docs:
        invalid({"cniVersion": version, **doc}, version)


@pytest.mark.parametrize("version", ["0.3.0", "0.4.0", "1.0.0", "1.1.0"])
@pytest.mark.parametrize(
    ("interfaces", "index"), [([], 0), ([{"name": "eth0"}], 1), ([{"name": "eth0"}], -1)]
)
def test_interface_index_out_of_range(version: str, interfaces: list[Any], index: int) -> None:
    doc = {"cniVersion": version, "interfaces": interfaces,
           "ips": [{"address": "10.1.0.5/16", "interface": index}]}
    if version in WITH_IP_VERSION:
        doc["ips"][0]["version"] = "4"
    invalid(doc, version)


@pytest.mark.parametrize("version", WITH_IP_VERSION)
@pytest.mark.parametrize(
    ("ip_version", "address"),
    [("6", "10.1.0.5/16"), ("4", "2001:db8::5/64"), ("5", "10.1.0.5/16"), ("", "fd00::1/64")],
)
def test_version_field_must_match_address_family(
    version: str, ip_version: str, address: str
) -> None:
    err = invalid({"cniVersion": version, "ips": [{"version": ip_version, "address": address}]},
                  version)
    assert "version" in err.details


@pytest.mark.parametrize("version", LEGACY)
@pytest.mark.parametrize(("key", "address"), [("ip4", "2001:db8::5/64"), ("ip6", "10.1.0.5/16")])
def test_legacy_block_must_match_address_family(version: str, key: str, address: str) -> None:
    # In 0.1.0/0.2.0 the block name is the family marker, as `version` is in 0.3.x/0.4.0.
    invalid({"cniVersion": version, key: {"ip": address}}, version)


@pytest.mark.parametrize(
    "doc",
    [
        {"interfaces": [{"mac": "02:42:ac:11:00:02"}]},       # interface without name
        {"interfaces": "eth0"},
        {"ips": ["10.1.0.5/16"]},
        {"ips": [{"address": "10.1.0.5/16", "interface": "0x"}]},
        {"routes": [{"gw": "10.1.0.1"}]},                      # route without dst
        {"dns": {"nameservers": "8.8.8.8"}},
        {"ips": 5},                                            # not a list at all
        {"ips": {"address": "10.1.0.5/16"}},
        {"routes": 5},
    ],
    ids=["iface-no-name", "ifaces-str", "ips-str-items", "ips-bad-index", "route-no-dst",
         "dns-str", "ips-int", "ips-object", "routes-int"],
)
@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
def test_malformed_current_structure(doc: dict[str, Any], version: str) -> None:
    invalid({"cniVersion": version, **doc}, version)


@pytest.mark.parametrize(
    "doc",
    [
        {"ip4": "10.1.0.5/16"},
        {"ip4": {"gateway": "10.1.0.1"}},
        {"ip4": {"ip": 5}},
        {"ip4": {"ip": "10.1.0.5/16", "routes": [5]}},
        {"ip4": {"ip": "10.1.0.5/16", "routes": 5}},           # not a list at all
        {"ip4": {"ip": "10.1.0.5/16", "routes": {"dst": "0.0.0.0/0"}}},
        {"dns": ["8.8.8.8"]},
    ],
    ids=["ip4-str", "ip4-no-ip", "ip4-ip-int", "routes-int-items", "routes-int",
         "routes-object", "dns-list"],
)
def test_malformed_legacy_structure(doc: dict[str, Any]) -> None:
    invalid({"cniVersion": "0.2.0", **doc}, "0.2.0")
