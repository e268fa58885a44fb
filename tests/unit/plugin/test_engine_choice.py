"""Which engine the plugin asks (handlers.engine_for): the config's dockerHost, else
DOCKER_HOST, else the local socket; TLS only from the config. No connection is made."""

from __future__ import annotations

import pytest

from cni2cnm.engine import DEFAULT_HOST, Engine, TLSSettings
from cni2cnm.plugin import engine_for
from cni2cnm.plugin.config import PluginConf


def conf(**kw: object) -> PluginConf:
    return PluginConf.model_validate({"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm", **kw})


@pytest.mark.parametrize(("kw", "environ", "want"), [
    ({"dockerHost": "tcp://10.0.0.1:2376"}, {"DOCKER_HOST": "unix:///x.sock"},
     "tcp://10.0.0.1:2376"),
    ({}, {"DOCKER_HOST": "unix:///x.sock"}, "unix:///x.sock"),
    ({}, {"DOCKER_HOST": ""}, DEFAULT_HOST),
    ({}, {}, DEFAULT_HOST),
])
def test_host_precedence(kw: dict[str, object], environ: dict[str, str], want: str) -> None:
    engine = engine_for(conf(**kw), environ)
    assert isinstance(engine, Engine) and engine.base_url == want and engine.tls is None


def test_tls_and_timeout_come_from_the_config() -> None:
    engine = engine_for(conf(dockerTimeout=5.0, tls={"ca": "/ca.pem", "cert": "/c.pem",
                                                     "key": "/k.pem", "verify": False}),
                        {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/elsewhere"})
    assert isinstance(engine, Engine) and engine.timeout == 5.0
    assert engine.tls == TLSSettings(ca="/ca.pem", cert="/c.pem", key="/k.pem", verify=False)
