"""The daemon modes have one definition (plugin.config.DaemonMode): the executable reads each
as itself, the config model and `install --daemon-mode` accept exactly them."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from pydantic import ValidationError

from cni2cnm.cli import cli
from cni2cnm.daemon import client, wire
from cni2cnm.plugin.config import DaemonMode, PluginConf

MODES = get_args(DaemonMode)


def test_the_named_modes_are_the_config_models() -> None:
    assert {wire.MODE_AUTO, wire.MODE_MANUAL, wire.MODE_OFF} == set(MODES)
    assert PluginConf.model_fields["daemon"].default == wire.MODE_AUTO


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_read_as_itself(mode: str) -> None:
    conf = {"cniVersion": "1.1.0", "name": "n", "type": "cni2cnm", "daemon": mode}
    assert PluginConf.model_validate(conf).daemon == mode
    assert client.daemon_mode({}, json.dumps(conf).encode()) == mode
    assert client.daemon_mode({wire.MODE_ENV: mode}, b"{}") == mode


def test_a_mode_the_model_refuses_is_manual_for_the_executable() -> None:
    conf = {"cniVersion": "1.1.0", "name": "n", "type": "cni2cnm", "daemon": "sometimes"}
    with pytest.raises(ValidationError):
        PluginConf.model_validate(conf)
    assert client.daemon_mode({}, json.dumps(conf).encode()) == wire.MODE_MANUAL


def test_install_offers_exactly_the_modes() -> None:
    [option] = [p for p in cli.commands["install"].params if p.name == "daemon_mode"]
    assert tuple(option.type.choices) == MODES
    assert option.default == wire.MODE_AUTO
