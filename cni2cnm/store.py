"""The attachment store: one SQLite row per (CNI network, CNI container ID, ifname).

An ADD writes its intent (state "adding") before it changes the engine and
completes the row ("attached") afterwards, so a plugin killed half-way leaves a
row that DEL or GC can finish. Operations on one container are serialised by a
lock file of its own (`locks/<hash of the container ID>`), which the holder removes before
releasing it, so lock files exist only while operations run or wait; different containers
run in parallel. A lock is waited for at most LOCK_TIMEOUT seconds (StoreBusy).

The `store-id` marker says "a store existed here". It is written, atomically and
before any row can be recorded, whenever the schema is initialised or found without
it (however the database file came to exist: a first ADD killed after SQLite made the
file but before the marker leaves one without). A database that is missing, or empty,
while the marker exists is a lost store: opening it fails (code 5) instead of silently
starting again empty.

The state directory is trusted only when it, and every directory above it, is owned by root
and not writable by group or others, and none of them is a symbolic link (cni2cnm.safedirs);
the files in it are opened without following symbolic links.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from cni2cnm.records import ADDING as ADDING
from cni2cnm.records import ATTACHED as ATTACHED
from cni2cnm.records import COLUMNS, SCHEMA, attachment_of
from cni2cnm.records import DELETING as DELETING
from cni2cnm.records import SANDBOX_GONE as SANDBOX_GONE
from cni2cnm.records import Attachment as Attachment
from cni2cnm.safedirs import UnsafeDir, ensure_dir
from cni2cnm.statefiles import StoreBusy as StoreBusy
from cni2cnm.statefiles import StoreError as StoreError
from cni2cnm.statefiles import (
    flock_within,
    fsync_dir,
    lstat_or_none,
    open_lock,
    remove_if_free,
    still_named,
)
from cni2cnm.testhook import stop_point

log = logging.getLogger("cni2cnm.store")

# The states "deleting" and "sandbox-gone" are values, not a new schema: older versions read
# them as "not attached" (CHECK fails, DEL and GC finish them), so stores stay version 1 and
# both versions can open them. What they added, the (state, mode) index, is added to a store
# that lacks it when it is opened.
SCHEMA_VERSION = 1
STATE_INDEX = "attachments_state"
DB_NAME = "attachments.db"
MARKER_NAME = "store-id"  # written with the schema: its absence later means "lost"
LOCKS_DIR = "locks"
INIT_LOCK = "init"  # the one lock file that stays
SWEPT = ".swept"  # in locks/: the lock files older versions left (one per container) are gone
LOCK_TIMEOUT = 60.0  # seconds a per-container lock is waited for before "busy" (code 11)
KEEP_CORRUPT = 3  # attachments.db.corrupt-* copies kept; older ones are deleted
CORRUPT_INFIX = ".corrupt-"

# Spelled out here: in the class body `list` is Store.list.
Records = list[Attachment]
Rows = list[tuple[Any, ...]]
Params = Sequence[object]


class Store:
    def __init__(self, state_dir: str, lock_timeout: float | None = None) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, DB_NAME)
        self.marker = os.path.join(state_dir, MARKER_NAME)
        self.locks_dir = os.path.join(state_dir, LOCKS_DIR)
        self.lock_timeout = lock_timeout
        self._db: sqlite3.Connection | None = None

    # ---- opening ----------------------------------------------------------

    def open(self) -> Store:
        if self._db is not None:
            return self
        self._prepare_dir()
        stop_point(os.environ, "before-db")  # test point: the database may not exist yet
        new = not self._lexists(self.path)
        for suffix in ("-wal", "-shm"):
            self._lexists(self.path + suffix)  # refuses symbolic links
        if new and self._lexists(self.marker):
            raise self._lost("is missing")
        old_umask = os.umask(0o077)
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA synchronous = NORMAL")
            stop_point(os.environ, "after-db-created")  # test point: the file, no schema
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"state database {self.path} has schema {version}, newer than this "
                    f"cni2cnm ({SCHEMA_VERSION}); upgrade cni2cnm", self.path)
            if (version < SCHEMA_VERSION or not self._lexists(self.marker)
                    or not _has_index(db, STATE_INDEX)
                    or not self._lexists(os.path.join(self.locks_dir, SWEPT))):
                self._initialise(db)
            self._private(self.marker)
        except sqlite3.DatabaseError as e:
            if db is not None:
                db.close()
            raise self._database_error(e) from None
        except BaseException:
            if db is not None:
                db.close()
            raise
        finally:
            os.umask(old_umask)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)  # not a link: _lexists refused that
        self._db = db
        return self

    def _initialise(self, db: sqlite3.Connection) -> None:
        """Schema, then marker, one process at a time (switching to WAL ignores the busy
        timeout). Whatever interrupted an earlier first open, this finishes it."""
        with self._exclusive(INIT_LOCK):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and self._lexists(self.marker):
                # The marker is only ever written after the schema: an empty database next
                # to it replaced the store that was here.
                raise self._lost("is empty")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            if version < SCHEMA_VERSION or not _has_index(db, STATE_INDEX):
                db.executescript(SCHEMA)  # IF NOT EXISTS throughout: adds what is missing
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            stop_point(os.environ, "after-schema")  # test point: schema, no marker yet
            if not self._lexists(self.marker):
                self._write_marker()
            self._sweep_old_locks()

    def _sweep_old_locks(self) -> None:
        """Once per state directory: remove the lock files versions that did not remove them
        left (one per container ever seen), each only while nobody holds it."""
        sentinel = os.path.join(self.locks_dir, SWEPT)
        if self._lexists(sentinel):
            return
        with contextlib.suppress(OSError):
            for name in os.listdir(self.locks_dir):
                if len(name) == 32 and all(c in "0123456789abcdef" for c in name):
                    remove_if_free(os.path.join(self.locks_dir, name))
        try:
            os.close(os.open(sentinel, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600))
        except OSError as e:
            raise StoreError(f"cannot write {sentinel}: {e.strerror}", sentinel) from None

    def _lost(self, what: str) -> StoreError:
        return StoreError(
            f"state database {self.path} {what}, but {self.marker} shows a store existed: "
            "the attachments it recorded are unknown. Restore it, or remove "
            f"{self.marker} to start with an empty store (check for leftover endpoints with "
            "`cni2cnm inspect` first)", self.path)

    def _prepare_dir(self) -> None:
        """Create the state directory (0700; missing parents 0755, whatever the umask) and
        its locks/, and refuse them when a link or others than root could change where they
        lead (cni2cnm.safedirs: every component up to `/`)."""
        for path in (self.state_dir, self.locks_dir):
            try:
                ensure_dir(path, 0o700)
            except UnsafeDir as e:
                raise StoreError(str(e), e.path) from None

    def _lexists(self, path: str) -> bool:
        """Whether `path` exists; a symbolic link there is refused, never followed."""
        st = lstat_or_none(path)
        if st is None:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(f"{path} is a symbolic link: cni2cnm never follows links in its "
                             f"state directory; remove it (and restore the file it pointed "
                             "to in its place if it was the store)", path)
        return True

    def _private(self, path: str) -> None:
        """Make a regular file we keep 0600 (markers older versions wrote were 0644)."""
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != 0o600:
                os.chmod(path, 0o600)

    def _write_marker(self) -> None:
        """Write store-id atomically: a 0600 temporary file, fsync, link into place (never
        over an existing marker), fsync the directory. Called under the init lock."""
        prefix = f".{MARKER_NAME}."
        with contextlib.suppress(OSError):
            for name in os.listdir(self.state_dir):  # left by an open killed right here
                if name.startswith(prefix):
                    os.unlink(os.path.join(self.state_dir, name))
        tmp = os.path.join(self.state_dir, prefix + uuid.uuid4().hex)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (uuid.uuid4().hex + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.marker)
            fsync_dir(self.state_dir)
        except OSError as e:
            raise StoreError(f"cannot write {self.marker}: {e.strerror}", self.marker) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _database_error(self, e: sqlite3.DatabaseError) -> StoreError:
        text = str(e)
        if "not a database" in text or "malformed" in text:
            aside = f"{self.path}{CORRUPT_INFIX}{time.time_ns()}"
            try:
                os.rename(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(self.path + suffix, aside + suffix)
                log.error("state database %s is corrupt (%s); moved it aside to %s",
                          self.path, text, aside)
                self._prune_corrupt()
                return StoreError(f"state database {self.path} was corrupt ({text}); it was "
                                  f"moved aside to {aside}. ADD is refused until an operator "
                                  f"removes {self.marker} (check for leftover endpoints with "
                                  "`cni2cnm inspect` first)", self.path)
            except OSError as oe:
                log.error("state database %s is corrupt (%s) and cannot be moved: %s",
                          self.path, text, oe)
        return StoreError(f"cannot open state database {self.path}: {text}", self.path)

    def identity(self) -> str:
        """The store's identity (the `store-id` marker), "" when there is none yet. It labels
        what this store makes outside itself (proxy sandboxes), so that another stateDir on
        the same engine never sweeps them."""
        try:
            with open(self.marker) as f:
                return f.read().strip()
        except OSError:
            return ""

    def _prune_corrupt(self) -> None:
        """Keep the KEEP_CORRUPT newest corrupt copies (with their -wal/-shm)."""
        prefix = DB_NAME + CORRUPT_INFIX
        stamps: set[str] = set()
        with contextlib.suppress(OSError):
            for name in os.listdir(self.state_dir):
                if name.startswith(prefix):
                    stamp = name[len(prefix):].split("-", 1)[0]
                    if stamp.isdigit():
                        stamps.add(stamp)
        for stamp in sorted(stamps, key=int)[:-KEEP_CORRUPT]:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.state_dir, prefix + stamp + suffix))
            log.warning("deleted the old corrupt copy %s%s (keeping the %d newest)", prefix,
                        stamp, KEEP_CORRUPT)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    # ---- locking ----------------------------------------------------------

    def lock_file(self, container_id: str) -> str:
        """The lock file serialising operations on `container_id`."""
        return os.path.join(self.locks_dir,
                            hashlib.sha256(container_id.encode()).hexdigest()[:32])

    @contextlib.contextmanager
    def lock(self, container_id: str, timeout: float | None = None) -> Iterator[None]:
        """Serialise operations on one CNI container across processes.

        The holder removes the lock file before it releases the lock, so the number of lock
        files stays bounded by the operations running or waiting. A waiter that then gets
        the lock of a removed file sees that the path no longer names it, and starts again
        with the file now there (the classic flock + unlink protocol). A holder that was
        killed leaves its file; the next operation on that container (runtimes DEL after a
        failed ADD) removes it.
        """
        path = self.lock_file(container_id)
        what = f"container {container_id}"
        wait = self._timeout() if timeout is None else timeout  # 0: only if free now
        deadline = time.monotonic() + wait
        while True:
            fd = open_lock(path)
            try:
                flock_within(fd, path, deadline - time.monotonic(), wait, what)
                if still_named(fd, path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # removed by the holder before us: take the file there now
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still holding it: waiters start again
            os.close(fd)

    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        """A lock file that stays (the initialisation's)."""
        path = os.path.join(self.locks_dir, name)
        fd = open_lock(path)
        try:
            flock_within(fd, path, self._timeout(), self._timeout(), "the store's initialisation")
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _timeout(self) -> float:
        return LOCK_TIMEOUT if self.lock_timeout is None else self.lock_timeout

    # ---- rows -------------------------------------------------------------

    def get(self, network: str, container_id: str, ifname: str) -> Attachment | None:
        row = self._query(
            f"SELECT {', '.join(COLUMNS)} FROM attachments "
            "WHERE network = ? AND container_id = ? AND ifname = ?",
            (network, container_id, ifname),
        )
        return attachment_of(row[0]) if row else None

    def list(self, network: str | None = None) -> Records:
        sql = f"SELECT {', '.join(COLUMNS)} FROM attachments"
        params: tuple[str, ...] = ()
        if network is not None:
            sql += " WHERE network = ?"
            params = (network,)
        sql += " ORDER BY created"
        return [attachment_of(r) for r in self._query(sql, params)]

    def in_state(self, state: str, mode: str | None = None, limit: int = -1) -> Records:
        """The records in `state` (and `mode`), oldest change first: one indexed query."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM attachments WHERE state = ?"
        params: tuple[object, ...] = (state,)
        if mode is not None:
            sql += " AND mode = ?"
            params += (mode,)
        return [attachment_of(r) for r in self._query(sql + " ORDER BY updated LIMIT ?",
                                                      (*params, limit))]

    # ---- transitions: adding -> attached -> deleting / sandbox-gone -------

    def record_intent(self, intent: Attachment) -> Attachment:
        """ADD's first write, before it changes the engine: the whole record, state "adding",
        so that DEL or GC can finish an ADD killed at any later step."""
        return self.put(dataclasses.replace(intent, state=ADDING))

    def connected(self, att: Attachment, sandbox_id: str) -> Attachment:
        """Proxy mode, still "adding": the sandbox ADD started (on the network now), written
        before anything else changes, so that DEL or GC of an interrupted ADD removes it."""
        return self.put(dataclasses.replace(att, docker_id=sandbox_id, sandbox_id=sandbox_id))

    def moving(self, att: Attachment, network_id: str, network_name: str, mac: str
               ) -> Attachment:
        """Proxy mode, still "adding": the network as inspected after the connect and the
        endpoint's MAC, written before its interface moves into the pod (DEL of an interrupted
        ADD finds the interface there by this MAC)."""
        return self.put(dataclasses.replace(att, network_id=network_id,
                                            network_name=network_name, mac=mac))

    def attached(self, att: Attachment, endpoint_id: str, interface: str, mac: str,
                 ips: Sequence[str]) -> Attachment:
        """"adding" -> "attached": what ADD made, as verified in CNI_NETNS."""
        return self.put(dataclasses.replace(att, state=ATTACHED, endpoint_id=endpoint_id,
                                            interface=interface, mac=mac, ips=[*ips]))

    def mark(self, att: Attachment, state: str) -> Attachment:
        """A record that exists changes state only: attached/adding -> deleting (a DEL the
        engine could not answer), attached -> sandbox-gone (its proxy sandbox ended)."""
        marked = dataclasses.replace(att, state=state, updated=time.time())
        self._execute("UPDATE attachments SET state = ?, updated = ? "
                      "WHERE network = ? AND container_id = ? AND ifname = ?",
                      (state, marked.updated, *att.key))
        return marked

    def put(self, att: Attachment) -> Attachment:
        """The whole record as given (created and updated stamped): the transitions above
        write through it; tests and tools seed stores with it."""
        now = time.time()
        att = dataclasses.replace(att, created=att.created or now, updated=now)
        values = [getattr(att, c) for c in COLUMNS]
        values[COLUMNS.index("ips")] = json.dumps(att.ips)
        values[COLUMNS.index("none_detached")] = int(att.none_detached)
        self._execute(
            f"INSERT OR REPLACE INTO attachments ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in COLUMNS)})",
            values,
        )
        return att

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        self._execute(
            "DELETE FROM attachments WHERE network = ? AND container_id = ? AND ifname = ?",
            (network, container_id, ifname),
        )

    def _query(self, sql: str, params: Params) -> Rows:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read state database {self.path}: {e}", self.path) from None

    def _execute(self, sql: str, params: Params) -> None:
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(sql, params)
        except sqlite3.Error as e:
            raise StoreError(f"cannot write state database {self.path}: {e}", self.path) from None


def _has_index(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                      (name,)).fetchone() is not None
