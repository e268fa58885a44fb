"""The Docker engine adapter: typed models (models.py), typed refusals (errors.py), the
SDK-backed Engine (client.py) and the protocol the plugin depends on (protocol.py).

Knows Docker, knows nothing of CNI. The only place Docker's errors are read.
"""

from cni2cnm.engine.client import ClientPool, Engine, keep_clients, split_image_ref
from cni2cnm.engine.errors import (
    AddressInUse,
    AlreadyExists,
    Conflict,
    Deadline,
    EngineConfigError,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    NotAttachable,
    NotConnected,
    NotFound,
    Rejected,
    classify,
)
from cni2cnm.engine.models import (
    API_IFNAME,
    API_MAC_ON_CONNECT,
    DEFAULT_HOST,
    IFNAME_OPTION,
    Container,
    ContainerExit,
    Endpoint,
    Labelled,
    Member,
    Network,
    SandboxSpec,
    Subnet,
    TLSSettings,
)
from cni2cnm.engine.protocol import EngineAPI

__all__ = [
    "API_IFNAME", "API_MAC_ON_CONNECT", "DEFAULT_HOST", "IFNAME_OPTION", "AddressInUse",
    "AlreadyExists", "ClientPool", "Conflict", "Container", "ContainerExit", "Deadline",
    "Endpoint", "Engine", "EngineAPI", "EngineConfigError", "EngineError", "EngineUnavailable",
    "InvalidRequest", "Labelled", "Member", "Network", "NotAttachable", "NotConnected",
    "NotFound", "Rejected", "SandboxSpec", "Subnet", "TLSSettings", "classify",
    "keep_clients", "split_image_ref",
]
