"""cni2cnm.daemon.engines: the daemon's engine factory (pooled clients, counted calls)."""

from __future__ import annotations

import pytest

from cni2cnm.engine import EngineSettings

from .conftest import (
    UNREACHABLE,
)


def test_the_engine_factory_passes_the_pool_and_counts_calls() -> None:
    from cni2cnm import engine as eng
    from cni2cnm.daemon import engines

    calls: list[tuple[str, str | None]] = []

    class Counter:
        def engine_call(self, method: str, error: str | None) -> None:
            calls.append((method, error))

    pool = eng.ClientPool()
    conf = EngineSettings(timeout=7)
    made = engines.pooled(pool, Counter())(conf, {"DOCKER_HOST": UNREACHABLE})
    assert made.pool is pool and made.base_url == UNREACHABLE and made.timeout == 7
    with pytest.raises(eng.EngineUnavailable):
        made.container("x")
    assert calls == [("container", "EngineUnavailable")]
    plain = engines.pooled(pool)(conf, {})
    assert isinstance(plain, eng.Engine) and plain.pool is pool

