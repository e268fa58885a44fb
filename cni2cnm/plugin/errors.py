"""The one place the plugin's lower layers' failures become CNI errors: one table, read by
every handler's `boundary`, by STATUS and by GC.

Engine refusals map by their type (the engine adapter classified dockerd's messages, nothing
here reads them), store and namespace failures are I/O failures, a busy container lock is
"try again later".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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
from cni2cnm.store import StoreBusy, StoreError

log = logging.getLogger("cni2cnm.plugin")

REFUSED = "refused by the Docker engine"


@dataclass(frozen=True)
class Status:
    """STATUS's column: an engine or a store it cannot use means ADD cannot be served."""

    msg: str
    fix: str  # appended to the failure's own words
    code: Code = Code.NOT_AVAILABLE


ENGINE_DOWN = Status("Docker engine not available", "start dockerd or fix dockerHost/DOCKER_HOST")
ENGINE_CONFIG = Status("Docker engine not available", "fix the config's tls settings")
STORE_DOWN = Status("state store unavailable", "fix stateDir so ADD can record attachments")


@dataclass(frozen=True)
class Row:
    kind: type[Exception]
    code: Code  # every handler's boundary (GC: see gc_code)
    msg: str
    status: Status | None = None  # STATUS, where it asks the engine or opens the store
    note: str = ""  # added to the details at the boundary


# Lower-layer failures by type, most specific first. Columns: code and msg, every handler's
# (its boundary); status, STATUS's where it asks the engine or opens the store (an engine
# address it cannot use at all is the boundary's 7). GC keeps going past its problems and
# reports them together: code 11 when any of them is 11 in the `code` column (a retry can
# fix it), 100 otherwise (gc_code).
TABLE: tuple[Row, ...] = (
    Row(EngineUnavailable, Code.TRY_AGAIN_LATER, "Docker engine unavailable", ENGINE_DOWN,
        "; {op} can be retried once dockerd answers"),
    Row(EngineConfigError, Code.INVALID_CONFIG, "cannot use the configured engine connection",
        ENGINE_CONFIG),
    Row(NotFound, Code.INVALID_CONFIG, "not found by the Docker engine", ENGINE_DOWN),
    Row(AlreadyExists, Code.INTERFACE_EXISTS, REFUSED, ENGINE_DOWN),
    Row(Conflict, Code.INVALID_CONFIG, REFUSED, ENGINE_DOWN),  # address in use, ...
    Row(InvalidRequest, Code.INVALID_CONFIG, REFUSED, ENGINE_DOWN),
    Row(NotAttachable, Code.INVALID_CONFIG, REFUSED, ENGINE_DOWN),
    Row(Deadline, Code.INVALID_CONFIG, REFUSED, ENGINE_DOWN,
        " (on a swarm overlay this is how dockerd refuses a static address that is in use on "
        "another node)"),
    Row(EngineError, Code.ENGINE_REFUSED, REFUSED, ENGINE_DOWN),
    Row(StoreBusy, Code.TRY_AGAIN_LATER,
        "busy: another operation on this container holds its lock; retry", STORE_DOWN),
    Row(StoreError, Code.IO_FAILURE, "state store unavailable", STORE_DOWN),
    Row(netns.NetnsError, Code.IO_FAILURE, "cannot change the network namespace"),
    Row(ProxyError, Code.ENGINE_REFUSED, "proxy sandbox failed"),
)

MAPPED = (EngineError, StoreError, netns.NetnsError, ProxyError)  # what the table covers


def row_of(e: Exception) -> Row:
    return next(row for row in TABLE if isinstance(e, row.kind))


def explanation(e: Exception) -> str:
    """A failure's own words (the engine's explanation, else the message)."""
    return e.explanation if isinstance(e, EngineError) else str(e)


def cni_error(e: Exception, op: str) -> CNIError:
    """The CNI error the handler `op` reports for `e`."""
    row = row_of(e)
    return CNIError(row.code, row.msg, explanation(e) + row.note.format(op=op))


def status_error(e: EngineError | StoreError) -> CNIError:
    """STATUS's: the engine or the store cannot be used, and what to fix."""
    status = row_of(e).status or ENGINE_DOWN  # every engine and store row has its own
    return CNIError(status.code, status.msg, f"{explanation(e)}; {status.fix}")


def code_of(e: Exception) -> int:
    """The code `e` would have on its own (CNI errors carry theirs)."""
    return e.code if isinstance(e, CNIError) else row_of(e).code


def gc_code(problems: Iterable[Exception]) -> Code:
    """GC's: try again later when a retry can fix any of its problems."""
    retry = any(code_of(e) == Code.TRY_AGAIN_LATER for e in problems)
    return Code.TRY_AGAIN_LATER if retry else Code.ENGINE_REFUSED


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


@contextlib.contextmanager
def boundary(op: str) -> Iterator[None]:
    """Around a whole handler: anything the layers below raise becomes one CNI error."""
    try:
        yield
    except MAPPED as e:
        raise cni_error(e, op) from None
