"""The daemon's pool of idle engine clients (engine.ClientPool), without Docker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cni2cnm import engine as eng


class FakeClient:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def pool() -> Iterator[eng.ClientPool]:
    yield eng.ClientPool(max_idle=2)


def test_a_closed_engine_hands_its_client_to_the_next(pool: eng.ClientPool) -> None:
    first = eng.Engine("unix:///x.sock", timeout=5, pool=pool)
    client = FakeClient()
    first._client = client
    first.close()
    assert not client.closed
    second = eng.Engine("unix:///x.sock", timeout=5, pool=pool)
    assert second.client is client
    other = eng.Engine("unix:///y.sock", timeout=5, pool=pool)
    assert pool.take(other._pool_key) is None  # another engine URL never gets it


def test_a_client_that_met_a_connection_error_is_closed(pool: eng.ClientPool) -> None:
    e = eng.Engine("unix:///x.sock", timeout=5, pool=pool)
    client = FakeClient()
    e._client = client
    with pytest.raises(eng.EngineUnavailable), e._translate("inspect"):
        raise ConnectionRefusedError(111, "Connection refused")
    e.close()
    assert client.closed and pool.take(e._pool_key) is None


def test_idle_clients_are_bounded(pool: eng.ClientPool) -> None:
    clients = [FakeClient() for _ in range(3)]
    for c in clients:
        pool.give(("k",), c)
    assert [c.closed for c in clients] == [False, False, True]
    assert pool.take(("k",)) is clients[1] and pool.take(("k",)) is clients[0]
    assert pool.take(("k",)) is None


def test_clients_of_engines_not_used_lately_are_closed() -> None:
    pool = eng.ClientPool(max_idle=2, max_engines=2)
    clients = {k: FakeClient() for k in ("a", "b", "c")}
    pool.give(("a",), clients["a"])
    pool.give(("b",), clients["b"])
    assert pool.take(("a",)) is clients["a"]
    pool.give(("a",), clients["a"])  # "a" is now the most recently used
    pool.give(("c",), clients["c"])  # a third engine: "b" goes
    assert clients["b"].closed and not clients["a"].closed and not clients["c"].closed
    assert pool.take(("b",)) is None and pool.take(("a",)) is clients["a"]


def test_without_a_pool_close_closes() -> None:
    e = eng.Engine("unix:///x.sock")
    client = FakeClient()
    e._client = client
    e.close()
    assert client.closed


def test_the_pool_remembers_the_negotiated_version(pool: eng.ClientPool) -> None:
    pool.negotiated["unix:///x.sock"] = "1.41"
    e = eng.Engine("unix:///x.sock", timeout=5, pool=pool)
    assert e.pool is pool and pool.negotiated == {"unix:///x.sock": "1.41"}
