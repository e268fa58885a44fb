"""The daemon's engine factory: engine.choose_engine, as in-process (the config's dockerHost,
else the recorded engine, else DOCKER_HOST, else the local socket; its timeout and TLS), with
the daemon's pool of warm clients and, when the metrics are on, its call counter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cni2cnm.engine import ClientPool, EngineAPI, EngineCounter, EngineFactory, EngineSettings


def pooled(pool: ClientPool, counter: EngineCounter | None = None) -> EngineFactory:
    from cni2cnm.engine import choose_engine

    def factory(settings: EngineSettings, environ: Mapping[str, str], recorded: str = "",
                /) -> EngineAPI:
        return choose_engine(settings, environ, recorded, pool=pool, counter=counter)

    return factory
