"""What each Docker API version can do, and the engine releases cni2cnm is measured on.

The adapter (client.py), STATUS and `doctor` read the boundaries; the in-memory engine
(cni2cnm.testing) imitates each release from the same facts, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "API_CONNECT_VALIDATES_IP",
    "API_IFNAME",
    "API_MAC_AT_CREATE",
    "API_MAC_ON_CONNECT",
    "API_RANDOM_MAC",
    "MIN_API",
    "RELEASES",
    "Release",
    "release_of",
]

MIN_API = (1, 40)  # Docker 19.03: the oldest engine cni2cnm works with
# Docker 25.0: a MAC in EndpointSettings at container create (proxy sandboxes) is applied.
API_MAC_AT_CREATE = (1, 44)
# Docker 25.0: connect validates the endpoint's addresses first ("invalid endpoint settings"),
# so an address outside the subnet no longer leaves a stale Networks entry behind.
API_CONNECT_VALIDATES_IP = (1, 44)
API_IFNAME = (1, 48)  # Docker 28.0: the com.docker.network.endpoint.ifname driver option
# Docker 28.0: endpoints get random MACs (before: 02:42 + the IPv4 address).
API_RANDOM_MAC = (1, 48)
API_MAC_ON_CONNECT = (1, 54)  # Docker 29.3: mac_address honoured on connect


@dataclass(frozen=True)
class Release:
    """A dockerd release as its GET /version reports it."""

    version: str
    api: tuple[int, int]
    min_api: tuple[int, int]


# Measured (/version) on this project's engines: bookworm's 20.10, Debian unstable's 28.5;
# 29.3 is where API_MAC_ON_CONNECT starts (no engine here speaks it).
RELEASES = {
    "20.10": Release("20.10.24", (1, 41), (1, 12)),
    "28": Release("28.5.2", (1, 51), (1, 24)),
    "29.3": Release("29.3.0", (1, 54), (1, 24)),
}


def release_of(api: tuple[int, int]) -> Release:
    """The newest release in RELEASES that speaks `api` or older (the oldest for older APIs)."""
    known = sorted(RELEASES.values(), key=lambda r: r.api)
    return next((r for r in reversed(known) if r.api <= api), known[0])
