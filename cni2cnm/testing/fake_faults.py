"""The fake engine's test controls: the calls it was asked, faults to inject, actions to
run after a given call, and `down` (every call raises EngineUnavailable)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from cni2cnm.engine import EngineError, EngineUnavailable

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Fault:
    method: str
    error: EngineError
    nth: int = 1
    after: str | None = None  # count calls of `method` only once `after` was called
    times: int = 1
    seen: int = 0
    armed: bool = False


def api(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        engine: Faults = args[0]  # type: ignore[assignment]
        engine._enter(method.__name__, args[1:])
        result = method(*args, **kwargs)
        engine._leave(method.__name__)
        return result
    return call


class Faults:
    base_url: str
    shown: str
    down: bool

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._faults: list[Fault] = []
        self._hooks: list[tuple[str, int, Callable[[], None]]] = []
        self._counts: dict[str, int] = {}

    # ---- test controls --------------------------------------------------------------

    def fail(self, method: str, error: EngineError, nth: int = 1, after: str | None = None,
             times: int = 1) -> None:
        """The `nth` call of `method` from now on (counted once `after` was called, if
        given) raises `error`, `times` times."""
        self._faults.append(Fault(method, error, nth, after, times))

    def then(self, method: str, action: Callable[[], None], nth: int = 1) -> None:
        """Run `action` right after the `nth` call of `method` from now on returned."""
        self._hooks.append((method, self._counts.get(method, 0) + nth, action))

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    def _enter(self, method: str, args: tuple[Any, ...]) -> None:
        self.calls.append((method, args))
        for f in self._faults:
            if f.after == method:
                f.armed = True
        if self.down:
            raise EngineUnavailable(f"cannot {method}: {self.shown} did not answer "
                                    "(connection refused)")
        for f in self._faults:
            if f.method == method and f.times > 0 and (f.after is None or f.armed):
                f.seen += 1
                if f.seen >= f.nth:
                    f.times -= 1
                    raise f.error

    def _leave(self, method: str) -> None:
        self._counts[method] = self._counts.get(method, 0) + 1
        for name, nth, action in self._hooks:
            if name == method and self._counts[method] == nth:
                action()
