"""Which engine a request asks (engine.choose_engine, the one rule for the plugin, the daemon
and the CLI): the config's dockerHost, else the recorded engine, else DOCKER_HOST, else the
local socket; timeout and TLS only from the config. No connection is made."""

from __future__ import annotations

import pytest

from cni2cnm.engine import (
    DEFAULT_HOST,
    Engine,
    TLSSettings,
    choose_engine,
)
from cni2cnm.plugin import engine_settings
from cni2cnm.plugin.config import PluginConf


def conf(**kw: object) -> PluginConf:
    return PluginConf.model_validate({"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm", **kw})


@pytest.mark.parametrize(("kw", "environ", "recorded", "want"), [
    ({"dockerHost": "tcp://10.0.0.1:2376"}, {"DOCKER_HOST": "unix:///x.sock"}, "",
     "tcp://10.0.0.1:2376"),
    ({}, {"DOCKER_HOST": "unix:///x.sock"}, "", "unix:///x.sock"),
    ({}, {"DOCKER_HOST": ""}, "", DEFAULT_HOST),
    ({}, {}, "", DEFAULT_HOST),
    # DEL, CHECK, GC of an attachment made through another engine: the recorded one, unless
    # the config names its engine
    ({}, {"DOCKER_HOST": "unix:///x.sock"}, "unix:///made-on.sock", "unix:///made-on.sock"),
    ({}, {}, "unix:///made-on.sock", "unix:///made-on.sock"),
    ({"dockerHost": "tcp://10.0.0.1:2376"}, {}, "unix:///made-on.sock", "tcp://10.0.0.1:2376"),
])
def test_host_precedence(kw: dict[str, object], environ: dict[str, str], recorded: str,
                         want: str) -> None:
    engine = choose_engine(engine_settings(conf(**kw)), environ, recorded)
    assert isinstance(engine, Engine) and engine.base_url == want and engine.tls is None


def test_tls_and_timeout_come_from_the_config() -> None:
    engine = choose_engine(
        engine_settings(conf(dockerTimeout=5.0, tls={"ca": "/ca.pem", "cert": "/c.pem",
                                                    "key": "/k.pem", "verify": False})),
        {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/elsewhere"})
    assert isinstance(engine, Engine) and engine.timeout == 5.0
    assert engine.tls == TLSSettings(ca="/ca.pem", cert="/c.pem", key="/k.pem", verify=False)

