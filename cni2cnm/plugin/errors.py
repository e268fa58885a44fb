"""The one place the plugin's lower layers' failures become CNI errors.

Every handler runs inside `boundary`: engine refusals map to codes by their type (the
engine adapter classified dockerd's messages, nothing here reads them), store and
namespace failures are I/O failures, a busy container lock is "try again later".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from cni2cnm import netns
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.engine import (
    AlreadyExists,
    Conflict,
    Deadline,
    EngineConfigError,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    NotAttachable,
    NotFound,
)
from cni2cnm.plugin.proxy import ProxyError
from cni2cnm.store import StoreError

log = logging.getLogger("cni2cnm.plugin")

# Engine refusals by type, most specific first: (type, CNI code, message).
ENGINE_CODES: tuple[tuple[type[EngineError], Code, str], ...] = (
    (EngineUnavailable, Code.TRY_AGAIN_LATER, "Docker engine unavailable"),
    (EngineConfigError, Code.INVALID_CONFIG, "cannot use the configured engine connection"),
    (NotFound, Code.INVALID_CONFIG, "not found by the Docker engine"),
    (AlreadyExists, Code.INTERFACE_EXISTS, "refused by the Docker engine"),
    (Conflict, Code.INVALID_CONFIG, "refused by the Docker engine"),  # address in use, ...
    (InvalidRequest, Code.INVALID_CONFIG, "refused by the Docker engine"),
    (NotAttachable, Code.INVALID_CONFIG, "refused by the Docker engine"),
    (Deadline, Code.INVALID_CONFIG, "refused by the Docker engine"),
    (EngineError, Code.ENGINE_REFUSED, "refused by the Docker engine"),
)


def engine_error(e: EngineError, op: str) -> CNIError:
    code, msg = next((c, m) for kind, c, m in ENGINE_CODES if isinstance(e, kind))
    details = e.explanation
    if isinstance(e, EngineUnavailable):
        details += f"; {op} can be retried once dockerd answers"
    elif isinstance(e, Deadline):
        details += (" (on a swarm overlay this is how dockerd refuses a static address that "
                    "is in use on another node)")
    return CNIError(code, msg, details)


def pending_del(e: EngineUnavailable, host: str) -> CNIError:
    """A DEL whose record is now "deleting": the runtime need not send it again. The engine's
    own words (errno texts) go to the log only: runtimes read some of them as "already
    gone" (see cni.errors.MISREAD_AS_GONE)."""
    log.error("DEL recorded as pending: %s", e.explanation)
    return CNIError(Code.TRY_AGAIN_LATER, "DEL recorded as pending: the Docker engine did not "
                    "answer",
                    f"the engine {host or '(default)'} could not be reached; cni2cnm recorded "
                    "this DEL and finishes it by itself once the engine answers (its daemon "
                    "retries every second; without a daemon the next cni2cnm run or GC on this "
                    "node does); sending the DEL again is harmless")


def store_error(e: StoreError) -> CNIError:
    if e.busy:
        return CNIError(Code.TRY_AGAIN_LATER,
                        "busy: another operation on this container holds its lock; retry",
                        str(e))
    return CNIError(Code.IO_FAILURE, "state store unavailable", str(e))


@contextlib.contextmanager
def boundary(op: str) -> Iterator[None]:
    """Around a whole handler: anything the layers below raise becomes one CNI error."""
    try:
        yield
    except EngineError as e:
        raise engine_error(e, op) from None
    except StoreError as e:
        raise store_error(e) from None
    except netns.NetnsError as e:
        raise CNIError(Code.IO_FAILURE, "cannot change the network namespace", str(e)) from None
    except ProxyError as e:
        raise CNIError(Code.ENGINE_REFUSED, "proxy sandbox failed", str(e)) from None
