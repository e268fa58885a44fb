"""An engine whose calls are counted (the daemon's metrics): each call of a public method,
and the EngineError it raised, by kind (NotFound, Conflict, EngineUnavailable, Rejected)."""

from __future__ import annotations

from typing import Any, Protocol

from cni2cnm.engine.errors import EngineError
from cni2cnm.engine.protocol import EngineAPI


class EngineCounter(Protocol):
    def engine_call(self, method: str, error: str | None) -> None: ...


class Counted:
    """`engine` with its public method calls counted (everything else passes through)."""

    def __init__(self, engine: EngineAPI, counter: EngineCounter) -> None:
        self._engine = engine
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name.startswith("_") or name in ("close", "client") or not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attr(*args, **kwargs)
            except EngineError as e:
                self._counter.engine_call(name, type(e).__name__)
                raise
            self._counter.engine_call(name, None)
            return result

        return counted
