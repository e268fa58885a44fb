"""Which engine a request asks, decided in one place for the plugin, the daemon and the CLI.

The address, first that is set: the config's (`EngineSettings.host`: the config wins over
the environment), the one a recorded attachment was made on (DEL, CHECK and GC of an
attachment ADD made through another engine: runtimes do not always give DEL the environment
ADD had, podman's cleanup process drops DOCKER_HOST), DOCKER_HOST, the local socket. Timeout
and TLS come from the settings only, never from the environment. A long-running process adds
its pool of warm clients and its call counter.

Plain values only: what a config says is turned into EngineSettings by its caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cni2cnm.engine.client import Engine
from cni2cnm.engine.counted import Counted, EngineCounter
from cni2cnm.engine.models import DEFAULT_HOST, DEFAULT_TIMEOUT, TLSSettings
from cni2cnm.engine.pool import ClientPool
from cni2cnm.engine.protocol import EngineAPI


@dataclass(frozen=True)
class EngineSettings:
    """What a config says about its engine ("" host: the config names none)."""

    host: str = ""
    timeout: float = DEFAULT_TIMEOUT
    tls: TLSSettings | None = None


def engine_host(settings: EngineSettings, environ: Mapping[str, str], recorded: str = ""
                ) -> str:
    """The address to ask: the config's, else the recorded one, else DOCKER_HOST, else the
    local socket."""
    return settings.host or recorded or environ.get("DOCKER_HOST") or DEFAULT_HOST


def choose_engine(settings: EngineSettings, environ: Mapping[str, str], recorded: str = "",
                  *, pool: ClientPool | None = None, counter: EngineCounter | None = None
                  ) -> EngineAPI:
    """The engine for one request (engine_host), its clients from `pool` when given, its
    calls counted by `counter` when given. No connection is made here."""
    engine = Engine(engine_host(settings, environ, recorded), timeout=settings.timeout,
                    tls=settings.tls, pool=pool)
    return engine if counter is None else Counted(engine, counter)


class EngineFactory(Protocol):
    """What hands the plugin its engines: choose_engine, with a pool and a counter in the
    daemon (daemon/engines.py), or in-memory engines in unit tests (which choose the address
    with engine_host too)."""

    def __call__(self, settings: EngineSettings, environ: Mapping[str, str],
                 recorded: str = "", /) -> EngineAPI: ...
