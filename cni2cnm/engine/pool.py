"""Warm SDK clients for a long-running process (the daemon), owned by it, not by a module."""

from __future__ import annotations

from typing import Any


class ClientPool:
    """Idle SDK clients, kept by a long-running process (the daemon) for the next request.

    A request takes a client and gives it back when it is done, so the client's keep-alive
    connection to dockerd stays open between requests. One client serves one request at a
    time; a client that met a connection error is closed instead of kept. At most
    `max_idle` clients are kept per engine, for the `max_engines` engines used last. The pool
    also remembers the API version agreed with each engine, so it is negotiated only once.
    Whoever owns the pool passes it to each Engine (`Engine(..., pool=pool)`).
    """

    def __init__(self, max_idle: int = 16, max_engines: int = 8) -> None:
        import threading
        from collections import OrderedDict

        self.max_idle = max_idle
        self.max_engines = max_engines
        self._idle: OrderedDict[tuple[Any, ...], list[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.negotiated: dict[str, str] = {}  # engine URL -> API version agreed with it

    def take(self, key: tuple[Any, ...]) -> Any | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: tuple[Any, ...], client: Any) -> None:
        surplus = []
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            if len(idle) < self.max_idle:
                idle.append(client)
            else:
                surplus.append(client)
            while len(self._idle) > self.max_engines:
                surplus.extend(self._idle.popitem(last=False)[1])
        for c in surplus:
            c.close()
