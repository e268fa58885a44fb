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


# Runtimes read these in a DEL error as "the namespace is already gone" and never send the DEL
# again: the dockershim and cri-dockerd (`deleteFromNetwork`: "no such file or directory"),
# containerd's go-cni `Remove` ("not found" anywhere; "no such file or directory" when
# CNI_NETNS is empty). A DEL that is already gone succeeds, so a DEL error never carries them.
MISREAD_AS_GONE = (("no such file or directory", "does not exist"), ("not found", "missing"))


def without_misread_phrases(text: str) -> str:
    """`text` with every phrase of MISREAD_AS_GONE replaced (any case)."""
    import re

    for phrase, instead in MISREAD_AS_GONE:
        text = re.sub(re.escape(phrase), instead, text, flags=re.IGNORECASE)
    return text


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

    def for_del(self) -> CNIError:
        """The same error as a DEL may answer it: without phrases runtimes misread."""
        return CNIError(self.code, without_misread_phrases(self.msg),
                        without_misread_phrases(self.details))

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"
