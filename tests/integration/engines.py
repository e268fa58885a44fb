"""What differs between the Docker engines the tests run on, read from the engine itself.

Tests branch on the engine's API version (``engine_api``), never on an environment variable:
each variant asserts what that engine does.  Measured here on bookworm's dockerd 20.10.24
(API 1.41) and Debian unstable's 28.5.2 (API 1.51) (``C2C_ENGINE``, scripts/engine.sh); the
boundaries between them are Docker's documented versions, not measured here.
"""

from __future__ import annotations

import ipaddress
from typing import Any

# Docker 25.0: a MAC in EndpointSettings at container create (proxy sandboxes) is applied.
API_MAC_AT_CREATE = (1, 44)
# Docker 25.0: connect validates the endpoint's addresses first ("invalid endpoint settings"),
# so an address outside the subnet no longer leaves a stale Networks entry behind.
API_CONNECT_VALIDATES_IP = (1, 44)
# Docker 28.0: the com.docker.network.endpoint.ifname driver option names the interface.
API_IFNAME = (1, 48)
# Docker 28.0: endpoints get random MACs (before: 02:42 + the IPv4 address), new on restart.
API_RANDOM_MAC = (1, 48)
# Docker 29.3: mac_address on connect is applied (no engine here speaks it).
API_MAC_ON_CONNECT = (1, 54)


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
