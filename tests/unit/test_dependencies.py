"""pyproject.toml's ranges, the floors CI tests (constraints/floors.txt) and the pinned tools
(constraints/tools.txt) say the same thing, and this interpreter runs what they allow."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def by_name(requirements: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, requirements)}


RUNTIME = by_name(PROJECT["dependencies"])
TEST = by_name(PROJECT["optional-dependencies"]["test"])


def pins(name: str) -> dict[str, Version]:
    """name -> version of every `name==version` line of constraints/<name>."""
    found: dict[str, Version] = {}
    for line in (ROOT / "constraints" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            [spec] = req.specifier
            assert spec.operator == "==", line
            found[canonicalize_name(req.name)] = Version(spec.version)
    return found


def floor(req: Requirement) -> Version:
    [low] = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return low


def test_the_floors_are_the_lower_bounds_of_the_ranges() -> None:
    assert pins("floors.txt") == {name: floor(req) for name, req in RUNTIME.items()}


def test_every_test_tool_is_pinned_within_its_range() -> None:
    tools = pins("tools.txt")
    assert set(TEST) <= set(tools)
    for name, req in TEST.items():
        assert req.specifier.contains(tools[name]), (name, tools[name])


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_installed_runtime_dependency_is_in_range(name: str) -> None:
    assert RUNTIME[name].specifier.contains(Version(version(name))), version(name)


@pytest.mark.parametrize("name", sorted(pins("tools.txt")))
def test_installed_tool_is_the_pinned_one(name: str) -> None:
    assert Version(version(name)) == pins("tools.txt")[name]
