"""Network configuration: well-known keys typed, unknown keys tolerated, this plugin's keys."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import BaseModel

from cni2cnm.cni.config import Attachment, NetConf, RuntimeConfig, parse_netconf
from cni2cnm.cni.errors import CNIError
from cni2cnm.cni.jsondoc import json_object, require_object
from cni2cnm.plugin.config import DEFAULT_DOCKER_TIMEOUT, DEFAULT_STATE_DIR, TLS, PluginConf

from .fakes import netconf


def parse(**extra: Any) -> PluginConf:
    return parse_netconf(netconf("1.1.0", **extra), PluginConf)


def test_the_spec_model_knows_no_plugin_keys() -> None:
    """cni/ is the protocol only: a plugin's keys live in its own model."""
    spec = set(NetConf.model_fields)
    assert not spec & {"network", "dockerHost", "stateDir", "sandboxImage", "daemonSocket"}
    conf = parse_netconf(netconf("1.1.0", stateDir="relative"))  # not the spec's business
    assert conf.model_extra == {"stateDir": "relative"}


def rejected(**extra: Any) -> CNIError:
    with pytest.raises(CNIError) as ei:
        parse(**extra)
    assert ei.value.code == 7, repr(ei.value)
    return ei.value


# ---- json_object, require_object ------------------------------------------------------------

def test_json_object() -> None:
    assert json_object(b'{"a": 1}') == ({"a": 1}, "")
    assert json_object(b'\xef\xbb\xbf{"a": 1}') == ({"a": 1}, "")  # UTF-8 BOM


@pytest.mark.parametrize("data", [b"", b"[]", b'"x"', b"1", b"null", b"{", b"\xff"])
def test_anything_but_a_json_object_is_code_6(data: bytes) -> None:
    with pytest.raises(CNIError) as ei:
        require_object(*json_object(data), "network config")
    assert ei.value.code == 6 and ei.value.msg == "cannot decode network config"


# ---- well-known keys ----------------------------------------------------------------------

def test_minimal_config_and_defaults() -> None:
    conf = parse()
    assert (conf.cniVersion, conf.name, conf.type) == ("1.1.0", "testnet", "cni2cnm")
    assert conf.ipMasq is None and conf.prevResult is None and conf.runtimeConfig is None
    assert conf.dockerTimeout == DEFAULT_DOCKER_TIMEOUT
    assert conf.stateDir == DEFAULT_STATE_DIR
    assert conf.mode == "auto" and conf.detachNone is True
    assert conf.aliases == [] and conf.driverOpts == {}


def test_well_known_keys_are_parsed() -> None:
    conf = parse(
        ipMasq=True,
        ipam={"type": "host-local", "subnet": "10.1.0.0/16"},
        dns={"nameservers": ["10.1.0.1"], "domain": "x", "search": ["a"], "options": ["o"]},
        args={"cni": {"ips": ["10.1.0.5"]}},
        capabilities={"portMappings": True, "ips": False},
        runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                         "protocol": "tcp"}],
                       "ips": ["10.1.0.5/16"], "mac": "02:00:00:00:00:01"},
        prevResult={"cniVersion": "1.1.0", "ips": []},
    )
    assert conf.ipMasq is True
    assert conf.ipam == {"type": "host-local", "subnet": "10.1.0.0/16"}
    assert conf.dns is not None and conf.dns.nameservers == ["10.1.0.1"]
    assert conf.capability("portMappings") and not conf.capability("ips")
    assert not conf.capability("bandwidth")
    rc = conf.runtimeConfig
    assert rc is not None and rc.portMappings is not None
    assert rc.portMappings[0].hostPort == 8080 and rc.ips == ["10.1.0.5/16"]
    assert conf.prevResult == {"cniVersion": "1.1.0", "ips": []}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ipMasq", "x"),
        ("ipMasq", [True]),
        ("ipam", "host-local"),
        ("dns", "8.8.8.8"),
        ("dns", {"nameservers": "8.8.8.8"}),
        ("args", ["a"]),
        ("capabilities", ["portMappings"]),
        ("capabilities", {"portMappings": "maybe"}),
        ("runtimeConfig", "x"),
        ("runtimeConfig", {"portMappings": [{"hostPort": "eighty", "containerPort": 80}]}),
        ("runtimeConfig", {"ips": "10.1.0.5/16"}),
        ("prevResult", "x"),
        ("prevResult", []),
    ],
)
def test_well_known_keys_are_typed(key: str, value: Any) -> None:
    err = rejected(**{key: value})
    assert key in err.details


def test_unknown_keys_are_kept_and_ignored() -> None:
    conf = parse(bridge="cni0", isGateway=True, hairpinMode=1, someVendor={"x": [1, 2]})
    assert conf.model_extra is not None
    assert conf.model_extra["bridge"] == "cni0"
    assert conf.model_extra["someVendor"] == {"x": [1, 2]}


# ---- keys are JSON names, never the Python names of aliased fields --------------------------
# pydantic's by-name/by-alias defaults changed across 2.x; these run under the floors
# (scripts/floors.sh) and the newest pydantic, and floors.sh runs this file on each minor between.

def config_models(model: type[BaseModel] = PluginConf) -> set[type[BaseModel]]:
    """The model, its bases and every model its fields hold, however deeply nested."""
    found = {c for c in model.__mro__ if issubclass(c, BaseModel) and c is not BaseModel}
    todo = [f.annotation for f in model.model_fields.values()]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if t not in found:
                found |= config_models(t)
        else:
            todo.extend(get_args(t))
    return found


def aliased_fields(model: type[BaseModel] = PluginConf) -> dict[str, str]:
    """Python name -> JSON key of every field whose key is not its Python name."""
    return {n: f.alias for n, f in model.model_fields.items() if f.alias and f.alias != n}


def test_every_config_model_reads_keys_by_their_json_name_only() -> None:
    models = config_models()
    assert {NetConf, PluginConf, TLS, Attachment, RuntimeConfig} <= models
    for m in models:
        modes = {k: m.model_config.get(k)
                 for k in ("validate_by_alias", "validate_by_name", "populate_by_name")}
        assert modes == {"validate_by_alias": True, "validate_by_name": False,
                         "populate_by_name": False}, m.__name__
        # An aliased field of a nested model needs its own case below.
        assert m in (NetConf, PluginConf) or not aliased_fields(m), m.__name__


def test_the_aliased_fields() -> None:
    assert aliased_fields() == {"valid_attachments": "cni.dev/valid-attachments",
                                "attachments": "cni.dev/attachments"}


ONE_ATTACHMENT = [{"containerID": "c1", "ifname": "eth0"}]


@pytest.mark.parametrize("name", sorted(aliased_fields()))
@pytest.mark.parametrize("value", ["anything", ONE_ATTACHMENT])
def test_field_names_that_are_not_config_keys_are_ignored(name: str, value: Any) -> None:
    # A user key that happens to equal the Python attribute name of an aliased field is an
    # unknown key, kept and ignored: never parsed (a valid value) nor refused (an invalid one).
    conf = parse(**{name: value})
    assert getattr(conf, name) is None
    assert conf.model_extra == {name: value}
    assert conf.valid_attachment_keys() is None


@pytest.mark.parametrize("name", sorted(aliased_fields()))
def test_aliased_fields_are_read_by_their_key(name: str) -> None:
    key = aliased_fields()[name]
    conf = parse(**{key: ONE_ATTACHMENT, name: [{"containerID": "c2", "ifname": "eth1"}]})
    assert conf.valid_attachment_keys() == {("c1", "eth0")}
    assert conf.model_extra == {name: [{"containerID": "c2", "ifname": "eth1"}]}
    assert rejected(**{key: "anything"}).details.startswith(f"{key}: ")


# ---- this plugin's keys -------------------------------------------------------------------

def test_plugin_keys() -> None:
    conf = parse(
        network="my-docker-net",
        dockerHost="unix:///run/docker.sock",
        dockerTimeout=12.5,
        stateDir="/run/cni2cnm",
        mode="container",
        logLevel="debug",
        detachNone=False,
        aliases=["web", "web.local"],
        driverOpts={"com.docker.network.endpoint.ifname": "eth0"},
    )
    assert conf.docker_network == "my-docker-net"
    assert conf.dockerHost == "unix:///run/docker.sock"
    assert conf.dockerTimeout == 12.5
    assert conf.stateDir == "/run/cni2cnm"
    assert conf.mode == "container" and conf.logLevel == "debug"
    assert conf.detachNone is False
    assert conf.aliases == ["web", "web.local"]
    assert conf.driverOpts == {"com.docker.network.endpoint.ifname": "eth0"}


def test_docker_network_defaults_to_name() -> None:
    assert parse().docker_network == "testnet"
    assert parse(network=None).docker_network == "testnet"


@pytest.mark.parametrize("mode", ["auto", "container", "proxy"])
def test_modes(mode: str) -> None:
    assert parse(mode=mode).mode == mode


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_levels(level: str) -> None:
    assert parse(logLevel=level).logLevel == level


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dockerTimeout", 0),
        ("dockerTimeout", -1),
        ("dockerTimeout", "soon"),
        ("dockerTimeout", 601),
        ("stateDir", "var/lib/cni2cnm"),
        ("stateDir", ""),
        ("stateDir", 5),
        ("mode", "bridge"),
        ("mode", "AUTO"),
        ("logLevel", "verbose"),
        ("logLevel", 10),
        ("detachNone", "sometimes"),
        # strict, as libcni's Go decoding is: no quoted booleans or numbers
        ("detachNone", "true"),
        ("detachNone", 1),
        ("dockerTimeout", "45"),
        ("dockerTimeout", True),
        ("ipMasq", "false"),
        ("capabilities", {"ips": "true"}),
        ("tls", {"verify": "false"}),
        ("runtimeConfig", {"portMappings": [{"hostPort": "80", "containerPort": 80}]}),
        ("aliases", "web"),
        ("aliases", [1, 2]),
        ("driverOpts", ["a=b"]),
        ("driverOpts", {"a": 1}),
        ("network", 5),
        ("dockerHost", ["unix:///x"]),
    ],
)
def test_plugin_keys_are_validated(key: str, value: Any) -> None:
    err = rejected(**{key: value})
    assert key in err.details


def test_numbers_stay_numbers() -> None:
    conf = parse(dockerTimeout=45, detachNone=False, capabilities={"ips": True})
    assert conf.dockerTimeout == 45.0 and conf.detachNone is False and conf.capability("ips")


def test_several_errors_are_all_named() -> None:
    err = rejected(ipMasq="x", mode="bridge", stateDir="rel")
    for key in ("ipMasq", "mode", "stateDir"):
        assert key in err.details


# ---- GC: valid attachments ----------------------------------------------------------------

A = {"containerID": "aaa", "ifname": "eth0"}
B = {"containerID": "bbb", "ifname": "net1"}


def test_valid_attachments_from_110_key() -> None:
    conf = parse(**{"cni.dev/valid-attachments": [A, B]})
    assert conf.valid_attachment_keys() == {("aaa", "eth0"), ("bbb", "net1")}


def test_valid_attachments_from_older_key() -> None:
    conf = parse(**{"cni.dev/attachments": [A]})
    assert conf.valid_attachment_keys() == {("aaa", "eth0")}


def test_valid_attachments_from_both_keys_are_merged() -> None:
    conf = parse(**{"cni.dev/valid-attachments": [A], "cni.dev/attachments": [B]})
    assert conf.valid_attachment_keys() == {("aaa", "eth0"), ("bbb", "net1")}


def test_no_attachment_key_is_none_and_empty_list_is_empty_set() -> None:
    assert parse().valid_attachment_keys() is None
    assert parse(**{"cni.dev/valid-attachments": []}).valid_attachment_keys() == set()


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
@pytest.mark.parametrize(
    "value", [[{"containerID": "aaa"}], [{"ifname": "eth0"}], "aaa", [["aaa", "eth0"]]]
)
def test_malformed_attachments_are_code_7(key: str, value: Any) -> None:
    err = rejected(**{key: value})
    assert key in err.details

