"""The attachment store on a real SQLite file (tmp_path)."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from cni2cnm.store import ATTACHED, Attachment, Store, StoreError


def att(cid: str = "c1", **kw: object) -> Attachment:
    return Attachment(network="net", container_id=cid, ifname="eth0", **kw)  # type: ignore[arg-type]


def test_round_trip_and_permissions(tmp_path: Path) -> None:
    d = tmp_path / "state"
    with Store(str(d)) as store:
        store.put(att(state=ATTACHED, ips=["10.0.0.2/24", "fd00::2/64"], none_detached=True))
        [got] = store.list("net")
        assert got.ips == ["10.0.0.2/24", "fd00::2/64"] and got.none_detached is True
        assert store.get("net", "c1", "eth0") == got
        assert store.list("other") == []
        store.delete("net", "c1", "eth0")
        assert store.list() == []
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / "attachments.db").st_mode) == 0o600


def test_same_container_is_serialised_different_ones_are_not(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).open()
    events: list[str] = []

    def hold(cid: str, name: str) -> None:
        with store.lock(cid):
            events.append(f"{name}+")
            time.sleep(0.3)
            events.append(f"{name}-")

    def run(pairs: list[tuple[str, str]]) -> list[str]:
        events.clear()
        threads = [threading.Thread(target=hold, args=p) for p in pairs]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        return list(events)

    assert run([("c1", "a"), ("c1", "b")]) == ["a+", "a-", "b+", "b-"]
    assert run([("c1", "a"), ("c2", "b")]) == ["a+", "b+", "a-", "b-"]


def test_corrupt_database_is_moved_aside_not_replaced(tmp_path: Path) -> None:
    with Store(str(tmp_path)) as store:
        store.put(att())
    db = tmp_path / "attachments.db"
    for p in tmp_path.glob("attachments.db*"):
        p.write_bytes(b"garbage" * 200)
    with pytest.raises(StoreError, match="moved aside"):
        Store(str(tmp_path)).open()
    assert list(tmp_path.glob("attachments.db.corrupt-*"))
    assert not db.exists()
    with pytest.raises(StoreError, match="missing"):  # not silently re-created
        Store(str(tmp_path)).open()
    (tmp_path / "store-id").unlink()  # the operator's acknowledgement
    with Store(str(tmp_path)) as store:
        assert store.list() == []


def test_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=str(blocker)):
        Store(str(blocker / "state")).open()



def test_many_creating_the_store_at_once(tmp_path: Path) -> None:
    # Switching a new database to WAL ignores SQLite's busy timeout: the first opens race.
    state_dir = str(tmp_path / "state")
    barrier = threading.Barrier(20)
    errors: list[Exception] = []

    def first_open(cid: str) -> None:
        barrier.wait()
        try:
            for n in range(10):  # as many short-lived plugin processes do
                with Store(state_dir) as store, store.lock(cid):
                    store.put(att(cid, endpoint_id=str(n)))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=first_open, args=(f"c{i}",)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(state_dir) as store:
        assert len(store.list()) == 20
