"""The daemon's engine factory: the engine DockerPlugin would make, with the daemon's pool of
warm clients passed in (Engine(..., pool=...)), and counted for the metrics when they are on.

The engine a request gets is chosen exactly as in-process (plugin.engine_for: the config's
dockerHost, else DOCKER_HOST, else the local socket; its timeout and TLS); only the pool is
added. Counting wraps each engine in a proxy that counts calls of its public methods and the
EngineErrors they raise, by kind (NotFound, Conflict, EngineUnavailable, Rejected).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from cni2cnm.engine import ClientPool, Engine
    from cni2cnm.plugin.config import PluginConf


class EngineCounter(Protocol):
    def engine_call(self, method: str, error: str | None) -> None: ...


def pooled(pool: ClientPool, counter: EngineCounter | None = None
           ) -> Callable[[PluginConf, Mapping[str, str]], Engine]:
    from cni2cnm.engine import Engine
    from cni2cnm.plugin import engine_for

    def factory(conf: PluginConf, environ: Mapping[str, str]) -> Engine:
        chosen = engine_for(conf, environ)
        engine = Engine(chosen.base_url, timeout=chosen.timeout, tls=chosen.tls, pool=pool)
        return engine if counter is None else cast("Engine", Counted(engine, counter))

    return factory


class Counted:
    """An Engine whose public method calls are counted (everything else passes through)."""

    def __init__(self, engine: Engine, counter: EngineCounter) -> None:
        self._engine = engine
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name.startswith("_") or name in ("close", "client") or not callable(attr):
            return attr
        from cni2cnm.engine import EngineError

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attr(*args, **kwargs)
            except EngineError as e:
                self._counter.engine_call(name, type(e).__name__)
                raise
            self._counter.engine_call(name, None)
            return result

        return counted
