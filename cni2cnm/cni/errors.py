"""The one exception type that carries a CNI error code."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Code(IntEnum):
    """Error codes reserved by the CNI spec, plus the ones this plugin defines (100+)."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # Plugin-specific codes (the spec leaves 100 and above to plugins).
    ENGINE_REFUSED = 100
    INTERFACE_EXISTS = 101
    INTERFACE_MISMATCH = 102
    CHECK_FAILED = 103
    INTERNAL = 999


class CNIError(Exception):
    """An error the runtime sees: printed as the spec's error object on stdout."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"
