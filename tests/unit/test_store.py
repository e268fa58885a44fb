"""The attachment store on a real SQLite file (tmp_path)."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from cni2cnm import store as store_module
from cni2cnm.cni import skel
from cni2cnm.engine import Labelled
from cni2cnm.store import ATTACHED, Attachment, Store, StoreBusy, StoreError
from cni2cnm.store import LOCK_TIMEOUT as DEFAULT_LOCK_TIMEOUT


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


# ==== issue 16: the store-id marker, whatever made the database file =========================


def marker(d: Path) -> Path:
    return d / "store-id"


def test_marker_is_written_with_the_schema_0600(tmp_path: Path) -> None:
    with Store(str(tmp_path)):
        pass
    assert stat.S_IMODE(marker(tmp_path).stat().st_mode) == 0o600
    assert len(marker(tmp_path).read_text().strip()) == 32
    assert not list(tmp_path.glob(".store-id.*"))  # the temporary file is gone


def test_a_database_file_without_schema_is_initialised_and_marked(tmp_path: Path) -> None:
    # A first ADD killed after sqlite3.connect made the file, before the schema.
    (tmp_path / "attachments.db").write_bytes(b"")
    with Store(str(tmp_path)) as store:
        store.put(att())
    assert marker(tmp_path).exists()
    _lost_after_delete(tmp_path)


def test_a_store_with_attachments_but_no_marker_gets_one(tmp_path: Path) -> None:
    # Killed between the schema and the marker (or made by a version that wrote the marker
    # only when the file was new): rows, no marker.
    with Store(str(tmp_path)) as store:
        store.put(att())
    marker(tmp_path).unlink()
    with Store(str(tmp_path)) as store:
        assert [a.container_id for a in store.list()] == ["c1"]
    assert marker(tmp_path).exists()
    _lost_after_delete(tmp_path)


def _lost_after_delete(d: Path) -> None:
    (d / "attachments.db").unlink()
    with pytest.raises(StoreError, match=r"is missing, but .*store-id shows a store existed"):
        Store(str(d)).open()
    assert not (d / "attachments.db").exists()  # refusing creates nothing


def test_an_empty_database_next_to_the_marker_is_a_lost_store(tmp_path: Path) -> None:
    with Store(str(tmp_path)) as store:
        store.put(att())
    for p in tmp_path.glob("attachments.db*"):
        p.unlink()
    (tmp_path / "attachments.db").write_bytes(b"")  # replaced by an empty file
    for _ in range(2):  # and stays refused
        with pytest.raises(StoreError, match=r"is empty, but .*store-id shows"):
            Store(str(tmp_path)).open()
    marker(tmp_path).unlink()  # the operator's acknowledgement
    with Store(str(tmp_path)) as store:
        assert store.list() == []
    assert marker(tmp_path).exists()


def test_the_marker_is_never_replaced(tmp_path: Path) -> None:
    with Store(str(tmp_path)):
        pass
    first = marker(tmp_path).read_text()
    marker(tmp_path).chmod(0o644)  # as versions before wrote it
    (tmp_path / ".store-id.left-by-a-killed-open").write_text("x")
    for _ in range(3):
        with Store(str(tmp_path)):
            pass
    assert marker(tmp_path).read_text() == first
    assert stat.S_IMODE(marker(tmp_path).stat().st_mode) == 0o600


def test_leftover_temporary_markers_are_removed_when_one_is_written(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    (tmp_path / ".store-id.0123").write_text("x")
    with Store(str(tmp_path)):
        pass
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ==== issue 12, item 5: private and bounded =================================================


def test_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(StoreError, match=rf"{d} is owned by uid 65534.*chown root:root {d}"):
        Store(str(d)).open()
    assert not (d / "attachments.db").exists()


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_state_dir_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    d = tmp_path / "state"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(StoreError, match=rf"writable by .*chmod go-w {d}"):
        Store(str(d)).open()


def test_state_dir_is_created_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Store(str(tmp_path / "a" / "state")):
            pass
    finally:
        os.umask(old)
    for p in (tmp_path / "a" / "state", tmp_path / "a" / "state" / "locks"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700
    # a missing parent is made 0755 whatever the umask (makedirs gave it 0777 under umask 0)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755


def test_a_symlinked_state_dir_is_refused_and_nothing_written_through_it(
        tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    with pytest.raises(StoreError, match=f"{tmp_path / 'state'} is a symbolic link"):
        Store(str(tmp_path / "state")).open()
    assert list(real.iterdir()) == []


def test_a_symlink_above_the_state_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real" / "state").mkdir(parents=True, mode=0o700)
    (tmp_path / "lib").symlink_to(tmp_path / "real")
    with pytest.raises(StoreError, match=f"{tmp_path / 'lib'} is a symbolic link"):
        Store(str(tmp_path / "lib" / "state")).open()
    assert list((tmp_path / "real" / "state").iterdir()) == []


def test_a_group_writable_parent_of_the_state_dir_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "lib"
    (parent / "state").mkdir(parents=True, mode=0o700)
    parent.chmod(0o775)
    with pytest.raises(StoreError, match=f"{parent} is writable by group or others"):
        Store(str(parent / "state")).open()
    parent.chmod(0o1777)  # sticky, as /tmp: nobody else can replace root's entries
    Store(str(parent / "state")).open().close()


@pytest.mark.parametrize("name", ["attachments.db", "attachments.db-wal", "store-id"])
def test_a_symlink_in_the_state_dir_is_never_followed(tmp_path: Path, name: str) -> None:
    state = tmp_path / "state"
    with Store(str(state)) as store:
        store.put(att())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    (state / name).unlink(missing_ok=True)
    (state / name).symlink_to(elsewhere)
    with pytest.raises(StoreError, match=f"{state / name} is a symbolic link"):
        Store(str(state)).open()
    assert elsewhere.read_bytes() == b""


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state")).open()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, store.lock_file("c1"))
    with pytest.raises(StoreError, match="is a symbolic link"), store.lock("c1"):
        pass
    assert victim.read_text() == "keep"


def test_the_lock_dir_may_not_be_a_symlink(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (tmp_path / "other").mkdir(mode=0o700)
    (state / "locks").symlink_to(tmp_path / "other")
    with pytest.raises(StoreError, match="locks is a symbolic link"):
        Store(str(state)).open()


def test_lock_files_are_bounded(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).open()
    for i in range(300):
        with store.lock(f"container-{i}"):
            assert os.path.exists(store.lock_file(f"container-{i}"))
    # Removed by each holder: only the initialisation's lock (and the sweep's sentinel) stay.
    assert sorted(os.listdir(store.locks_dir)) == [".swept", "init"]


def test_a_lock_file_removed_while_waited_for_still_excludes(tmp_path: Path) -> None:
    """Holders remove the file before releasing: waiters holding the old file start again,
    and never two hold the lock of one container at once."""
    holding: list[int] = []
    overlaps: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        store = Store(str(tmp_path)).open()
        try:
            for _ in range(40):
                with store.lock("c1"):
                    holding.append(n)
                    if len(holding) > 1:
                        overlaps.append(len(holding))
                    time.sleep(0.0005)
                    holding.remove(n)
        except BaseException as e:
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and overlaps == []
    assert not os.path.exists(Store(str(tmp_path)).lock_file("c1"))


def test_a_lock_left_by_a_killed_holder_is_taken_and_removed(tmp_path: Path) -> None:
    store = Store(str(tmp_path)).open()
    Path(store.lock_file("c1")).write_bytes(b"")  # its holder was SIGKILLed
    with store.lock("c1"):
        pass
    assert not os.path.exists(store.lock_file("c1"))


def test_lock_wait_times_out_busy(tmp_path: Path) -> None:
    holder = Store(str(tmp_path)).open()
    waiter = Store(str(tmp_path), lock_timeout=0.3).open()
    with holder.lock("c1"):
        start = time.monotonic()
        busy = r"busy: another operation on container c1 .*retry"
        with pytest.raises(StoreBusy, match=busy), waiter.lock("c1"):
            pass
        assert 0.3 <= time.monotonic() - start < 2
    with waiter.lock("c1"):  # released: taken at once
        pass


def test_default_lock_timeout_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.2)
    holder, waiter = Store(str(tmp_path)).open(), Store(str(tmp_path)).open()
    with holder.lock("c1"), pytest.raises(StoreBusy), waiter.lock("c1"):
        pass
    assert 30 <= DEFAULT_LOCK_TIMEOUT <= 120


def test_at_most_three_corrupt_copies(tmp_path: Path) -> None:
    for n in range(5):
        with Store(str(tmp_path)) as store:
            store.put(att(f"c{n}"))
        for p in tmp_path.glob("attachments.db*"):
            if ".corrupt-" not in p.name:
                p.write_bytes(b"garbage" * 200)
        with pytest.raises(StoreError, match="moved aside"):
            Store(str(tmp_path)).open()
        marker(tmp_path).unlink()
    copies = sorted(p.name for p in tmp_path.glob("attachments.db.corrupt-*")
                    if not p.name.endswith(("-wal", "-shm")))
    assert len(copies) == 3
    leftovers = {p.name.removesuffix("-wal").removesuffix("-shm")
                 for p in tmp_path.glob("attachments.db.corrupt-*")}
    assert leftovers == set(copies)  # no -wal/-shm of a deleted copy stays behind


# ==== issue 12, item 4: store failures the runtime sees are CNI errors 5 or 11 ==============


class NoEngine:
    """The engine of a plugin whose store fails first: only GC's orphan sweep asks it."""

    base_url = "fake://"

    def __init__(self, sandboxes: list[dict[str, object]] | None = None) -> None:
        self.sandboxes = sandboxes or []

    def containers_with_label(self, label: str) -> list[Labelled]:
        return [Labelled(id=str(c["Id"]), name="", labels=dict(c["Labels"]),  # type: ignore
                         state="running") for c in self.sandboxes]

    def close(self) -> None:
        pass


def run_plugin(command: str, state: Path, engine: NoEngine | None = None,
               version: str = "1.1.0", **conf: object) -> tuple[int, str]:
    from cni2cnm.plugin import DockerPlugin
    from cni2cnm.testing import FakeNamespaces
    from tests.unit.fakes import NETNS, env_for, netconf, stdin_of

    namespaces = FakeNamespaces()
    namespaces.create(NETNS)
    environ = env_for(command)
    doc = netconf(version, **{"stateDir": str(state), **conf})
    if command == "CHECK":
        doc["prevResult"] = {"cniVersion": version, "interfaces": [], "ips": []}
    plugin = DockerPlugin(environ=environ, namespaces=namespaces,
                          engine_factory=lambda *_: engine or NoEngine())  # type: ignore
    out = io.StringIO()
    rc = skel.dispatch(lambda: plugin, environ, io.BytesIO(stdin_of(doc)), out)
    return rc, out.getvalue()


def failing(*args: object, **kw: object) -> None:
    raise StoreError("cannot read state database /x: disk I/O error", "/x")


def test_gc_store_failure_is_code_5_not_999(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.fakes import assert_error

    monkeypatch.setattr(Store, "list", failing)  # GC lists outside engine_errors
    rc, out = run_plugin("GC", tmp_path / "state")
    assert "disk I/O error" in assert_error(rc, out, 5)["details"]


def test_gc_orphan_sweep_store_failure_is_code_5_not_999(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cni2cnm.plugin import proxy
    from tests.unit.fakes import assert_error

    ours = Store(str(tmp_path / "state")).open()
    store_id = ours.identity()
    ours.close()
    monkeypatch.setattr(Store, "get", failing)
    orphan = {"Id": "s1", "Labels": {proxy.LABEL_SANDBOX: "true", proxy.LABEL_STORE: store_id,
                                     proxy.LABEL_CONTAINER_ID: "gone", proxy.LABEL_IFNAME: "eth0"}}
    rc, out = run_plugin("GC", tmp_path / "state", NoEngine([orphan]))
    assert_error(rc, out, 5)


@pytest.mark.parametrize("command", ["DEL", "CHECK"])
def test_del_check_store_failure_is_code_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           command: str) -> None:
    from tests.unit.fakes import assert_error

    monkeypatch.setattr(Store, "get", failing)
    rc, out = run_plugin(command, tmp_path / "state")
    assert_error(rc, out, 5)


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_a_held_lock_is_busy_code_11(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     command: str) -> None:
    from tests.unit.fakes import assert_error, env_for

    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.2)
    holder = Store(str(tmp_path / "state")).open()
    with holder.lock(env_for(command)["CNI_CONTAINERID"]):
        rc, out = run_plugin(command, tmp_path / "state", mode="proxy")
    doc = assert_error(rc, out, 11)
    assert doc["msg"].startswith("busy") and "retry" in doc["msg"]


def test_gc_with_a_held_lock_is_code_11(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.fakes import assert_error

    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.2)
    holder = Store(str(tmp_path / "state")).open()
    holder.put(Attachment(network="testnet", container_id="c9", ifname="eth0"))
    with holder.lock("c9"):
        rc, out = run_plugin("GC", tmp_path / "state")
    assert "busy" in assert_error(rc, out, 11)["details"]


@pytest.mark.parametrize("key", ["stateDir", "logFile"])
@pytest.mark.parametrize("value", ["/var/lib/a\0b", "/var/log/\ud800"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_nul_or_surrogate_in_a_path_is_code_7(tmp_path: Path, key: str, value: str,
                                              command: str) -> None:
    from tests.unit.fakes import assert_error

    rc, out = run_plugin(command, tmp_path / "state", **{key: value})
    assert key in assert_error(rc, out, 7)["details"]


# ==== the test hook: unreachable in a normal installation ===================================


def armed_file(d: Path) -> Path:
    from cni2cnm import testhook

    f = d / "armed"
    f.write_bytes(testhook.ARMED)
    f.chmod(0o600)
    return f


def test_the_hook_is_armed_only_by_a_root_owned_file(tmp_path: Path) -> None:
    from cni2cnm import testhook

    f = armed_file(tmp_path)
    assert testhook.armed({testhook.ARMED_ENV: str(f)})
    assert not testhook.armed({})
    assert not testhook.armed({testhook.ARMED_ENV: "armed"})  # relative
    assert not testhook.armed({testhook.ARMED_ENV: str(tmp_path / "missing")})
    link = tmp_path / "link"
    link.symlink_to(f)
    assert not testhook.armed({testhook.ARMED_ENV: str(link)})
    f.chmod(0o620)
    assert not testhook.armed({testhook.ARMED_ENV: str(f)})
    f.chmod(0o600)
    os.chown(f, 65534, 65534)
    assert not testhook.armed({testhook.ARMED_ENV: str(f)})
    os.chown(f, 0, 0)
    f.write_bytes(b"anything else\n")
    assert not testhook.armed({testhook.ARMED_ENV: str(f)})


def test_the_hook_needs_a_source_checkout(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cni2cnm import testhook

    f = armed_file(tmp_path)
    assert testhook.from_source_checkout()
    monkeypatch.setattr(testhook, "from_source_checkout", lambda: False)  # a wheel
    assert not testhook.armed({testhook.ARMED_ENV: str(f)})


HOOK_CHILD = """
import os, sys
from cni2cnm.testhook import stop_point
stop_point(os.environ, "after-intent")
print("passed", flush=True)
"""


def run_hook_child(env: dict[str, str]) -> str:
    """'stopped' when the child stopped itself at the point, else its output."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOOK_CHILD], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", **env})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                assert proc.stdout is not None
                return proc.stdout.read().decode().strip()
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "T":
                return "stopped"
            time.sleep(0.02)
        raise TimeoutError
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_stop_point_fires_only_when_armed(tmp_path: Path) -> None:
    from cni2cnm import testhook

    at = {testhook.STOP_AT_ENV: "after-intent"}
    assert run_hook_child(at) == "passed"  # the variable alone, as leaked into a runtime
    assert run_hook_child({**at, testhook.ARMED_ENV: str(armed_file(tmp_path))}) == "stopped"


# ==== log files: private, no links followed ================================================


def test_log_file_is_0600_and_never_followed_through_a_link(tmp_path: Path) -> None:
    import logging
    import sys

    from cni2cnm.cni import logs
    from cni2cnm.cni.errors import CNIError

    try:
        f = tmp_path / "c.log"
        logs.setup(str(f), "info").info("one")
        assert stat.S_IMODE(f.stat().st_mode) == 0o600 and "one" in f.read_text()
        f.chmod(0o644)  # made by an older version
        logs.setup(str(f), "info").info("two")
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        target = tmp_path / "target"
        target.write_text("")
        (tmp_path / "link.log").symlink_to(target)
        os.mkfifo(tmp_path / "fifo")  # no reader: refused at once, not a hang
        for name, reason in (("link.log", "a symbolic link"), ("fifo", "No such device")):
            with pytest.raises(CNIError) as e:  # code 7 naming the file; stderr meanwhile
                logs.setup(str(tmp_path / name), "info")
            assert e.value.code == 7 and f"{tmp_path / name}: {reason}" in e.value.details
            logger = logging.getLogger(logs.LOGGER_NAME)
            assert [getattr(h, "stream", None) for h in logger.handlers] == [sys.stderr]
        assert target.read_text() == ""
    finally:
        logs.setup()


def test_per_container_lock_files_of_older_versions_are_removed_once(tmp_path: Path) -> None:
    import fcntl

    with Store(str(tmp_path)):
        pass
    locks = tmp_path / "locks"
    (locks / ".swept").unlink()  # a state directory an older version used
    old = [locks / f"{i:032x}" for i in range(39)]
    for f in old:
        f.write_bytes(b"")
    (locks / "keep-me").write_bytes(b"")
    held = os.open(old[0], os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # an operation in flight keeps its file
        with Store(str(tmp_path)):
            pass
    finally:
        os.close(held)
    assert sorted(p.name for p in locks.iterdir()) == [".swept", old[0].name, "init",
                                                       "keep-me"]
    (locks / f"{7:032x}").write_bytes(b"")  # swept once only: opens stay cheap
    with Store(str(tmp_path)):
        pass
    assert (locks / f"{7:032x}").exists()


# ---- the named transitions: each a new record, the one given unchanged -----------------


def test_transitions_write_what_changes_and_leave_the_given_record_as_it_was(
        tmp_path: Path) -> None:
    with Store(str(tmp_path)) as store:
        given = att(state=ATTACHED, network_id="n1")  # an intent is "adding", whatever it says
        intent = store.record_intent(given)
        assert (given.state, given.created) == (ATTACHED, 0.0)
        assert intent.state == "adding" and intent.created > 0
        assert store.get(*intent.key) == intent
        connected = store.connected(intent, "sb1")
        assert (connected.docker_id, connected.sandbox_id) == ("sb1", "sb1")
        assert intent.docker_id == "" and store.get(*intent.key) == connected
        moving = store.moving(connected, "n2", "pods", "02:00:00:00:00:01")
        assert (moving.network_id, moving.network_name, moving.mac, moving.state) == (
            "n2", "pods", "02:00:00:00:00:01", "adding")
        done = store.attached(moving, endpoint_id="ep", interface="eth0",
                              mac="02:00:00:00:00:02", ips=("10.0.0.2/24",))
        assert (done.state, done.endpoint_id, done.interface, done.mac, done.ips) == (
            ATTACHED, "ep", "eth0", "02:00:00:00:00:02", ["10.0.0.2/24"])
        assert done.created == intent.created and store.get(*done.key) == done
        marked = store.mark(done, "deleting")
        assert done.state == ATTACHED and marked.state == "deleting"
        assert store.get(*done.key) == marked


def test_records_are_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        att().state = ATTACHED  # type: ignore[misc]
