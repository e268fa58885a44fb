"""What differs between the Docker engines the tests run on, read from the engine itself.

Tests branch on the engine's API version (``engine_api``), never on an environment variable:
each variant asserts what that engine does.  The boundaries are cni2cnm.engine.versions' (the
adapter's and the fake engine's own facts, re-exported here); measured on bookworm's dockerd
20.10.24 (API 1.41) and Debian unstable's 28.5.2 (API 1.51) (``C2C_ENGINE``,
scripts/engine.sh), the others are Docker's documented versions.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cni2cnm.engine import API_IFNAME, API_RANDOM_MAC  # noqa: F401  (for the tests)


def engine_api(client: Any) -> tuple[int, int]:
    """The API version the engine itself reports (``GET /version``: ApiVersion)."""
    major, minor = str(client.version()["ApiVersion"]).split(".")[:2]
    return int(major), int(minor)


def derived_mac(ipv4: str) -> str:
    """The MAC engines before Docker 28 give an endpoint: 02:42 and the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ipv4).packed)


def is_local_unicast(mac: str) -> bool:
    """A locally administered unicast MAC (what Docker generates, either way)."""
    return int(mac.split(":")[0], 16) & 0b11 == 0b10
