"""The README and examples stay true to the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cni2cnm.cni.config import NetConf, parse_netconf
from cni2cnm.plugin.config import PluginConf

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# The plugin's own keys: its config model's fields beyond the spec's.
OWN_KEYS = sorted(set(PluginConf.model_fields) - set(NetConf.model_fields))


@pytest.mark.parametrize("key", OWN_KEYS)
def test_every_plugin_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in README


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.conflist")),
                         ids=lambda p: p.name)
def test_example_conflists_parse(path: Path) -> None:
    conflist = json.loads(path.read_text())
    ours = [p for p in conflist["plugins"] if p["type"] == "cni2cnm"]
    assert len(ours) == 1
    conf = parse_netconf({**ours[0], "cniVersion": conflist["cniVersion"],
                          "name": conflist["name"]}, PluginConf)
    assert conf.type == "cni2cnm"


def test_readme_starts_with_the_two_commands() -> None:
    first = [line.strip() for line in README.splitlines()[2:4]]
    assert first[0].startswith("sudo scripts/demo.sh")
    assert first[1].startswith("sudo scripts/test.sh")
    for script in ("demo.sh", "test.sh"):
        assert (ROOT / "scripts" / script).exists()


def test_readme_lists_the_inspect_schema_generated_from_the_model() -> None:
    from cni2cnm.ops.inspect_rows import describe_rows

    indented = "\n".join(("  " + line if line else "") for line in describe_rows().splitlines())
    assert indented in README
