"""The engine's refusals as types. The only place dockerd's messages are read.

dockerd answers most refusals with a status code that says little (400 and 500 cover
"address not in the subnet" as well as "not connected"), so the message text is
classified here, once, into the kinds callers act on. Callers never match text.
"""

from __future__ import annotations

__all__ = [
    "AddressInUse",
    "AlreadyExists",
    "Conflict",
    "Deadline",
    "EngineConfigError",
    "EngineError",
    "EngineUnavailable",
    "InvalidRequest",
    "NotAttachable",
    "NotConnected",
    "NotFound",
    "Rejected",
    "classify",
]


class EngineError(Exception):
    """The engine said no, or could not be asked."""

    def __init__(self, explanation: str, status: int | None = None) -> None:
        super().__init__(explanation)
        self.explanation = explanation
        self.status = status


class EngineUnavailable(EngineError):
    """The engine cannot be reached, or did not answer in time."""


class EngineConfigError(EngineError):
    """The connection settings themselves are unusable (a TLS file missing or invalid)."""


class NotFound(EngineError):
    """404: no such container, network or endpoint."""


class Conflict(EngineError):
    """403/409: forbidden in the current state."""


class AlreadyExists(Conflict):
    """The endpoint (or container name) already exists."""


class AddressInUse(Conflict):
    """A requested static address is taken."""


class Rejected(EngineError):
    """Any other refusal (400, 500)."""


class NotConnected(Rejected):
    """Disconnect of an endpoint that is not there (already gone: success for DEL)."""


class InvalidRequest(Rejected):
    """What was asked cannot be done on this network: an address outside its subnets, a
    static address on a network without a configured subnet, an invalid IP or MAC, a
    pool with no free address."""


class NotAttachable(Rejected):
    """A swarm network that is not attachable, or unknown to the swarm."""


class Deadline(Rejected):
    """dockerd gave up waiting ("context deadline exceeded"): on an overlay this is how it
    refuses a static address in use on another node."""


# (kind, lower-case fragments of dockerd's message), first match wins.
_BY_TEXT: tuple[tuple[type[EngineError], tuple[str, ...]], ...] = (
    (AddressInUse, ("address already in use",)),
    (AlreadyExists, ("already exists",)),
    (NotConnected, ("is not connected",)),
    (NotAttachable, ("not manually attachable", "code = notfound")),
    (Deadline, ("context deadline exceeded",)),
    (InvalidRequest, ("invalid address", "does not belong", "user specified ip address",
                      "no available", "invalid ip", "invalid mac",
                      # Docker 25+: "invalid endpoint settings: no configured subnet or
                      # ip-range contain the IP address X"
                      "invalid endpoint settings", "no configured subnet")),
)


def classify(status: int | None, explanation: str) -> EngineError:
    """The typed error for an API error answer of dockerd."""
    lowered = explanation.lower()
    for kind, fragments in _BY_TEXT:
        if any(f in lowered for f in fragments):
            return kind(explanation, status)
    if status == 404:
        return NotFound(explanation, status)
    if status in (403, 409):
        return Conflict(explanation, status)
    return Rejected(explanation, status)
