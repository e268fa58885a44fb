"""CNI spec versions: exact-string matching and feature predicates."""

from __future__ import annotations

from cni2cnm.cni.errors import CNIError, Code

SUPPORTED_VERSIONS: tuple[str, ...] = (
    "0.1.0",
    "0.2.0",
    "0.3.0",
    "0.3.1",
    "0.4.0",
    "1.0.0",
    "1.1.0",
)
LATEST = SUPPORTED_VERSIONS[-1]


def key(version: str) -> tuple[int, ...]:
    """Sort key of a supported version string."""
    return tuple(int(p) for p in version.split("."))


def require_supported(version: str) -> str:
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {list(SUPPORTED_VERSIONS)}',
        )
    return version


def at_least(version: str, minimum: str) -> bool:
    return key(version) >= key(minimum)


def has_check(version: str) -> bool:
    return at_least(version, "0.4.0")


def has_gc_and_status(version: str) -> bool:
    return at_least(version, "1.1.0")


def has_interfaces(version: str) -> bool:
    """0.3.0 introduced the interfaces/ips/routes result shape."""
    return at_least(version, "0.3.0")
