"""The attachment store: one SQLite row per (CNI network, CNI container ID, ifname).

An ADD writes its intent (state "adding") before it changes the engine and
completes the row ("attached") afterwards, so a plugin killed half-way leaves a
row that DEL or GC can finish. Operations on one container are serialised by a
per-container file lock; different containers run in parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

log = logging.getLogger("cni2cnm.store")

SCHEMA_VERSION = 1
DB_NAME = "attachments.db"
MARKER_NAME = "store-id"  # written with the database: its absence later means "lost"
ADDING = "adding"
ATTACHED = "attached"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attachments (
    network        TEXT NOT NULL,
    container_id   TEXT NOT NULL,
    ifname         TEXT NOT NULL,
    state          TEXT NOT NULL,
    mode           TEXT NOT NULL DEFAULT 'container',
    docker_network TEXT NOT NULL DEFAULT '',
    network_id     TEXT NOT NULL DEFAULT '',
    network_name   TEXT NOT NULL DEFAULT '',
    docker_id      TEXT NOT NULL DEFAULT '',
    docker_name    TEXT NOT NULL DEFAULT '',
    endpoint_id    TEXT NOT NULL DEFAULT '',
    netns          TEXT NOT NULL DEFAULT '',
    netns_dev      INTEGER NOT NULL DEFAULT 0,
    netns_ino      INTEGER NOT NULL DEFAULT 0,
    interface      TEXT NOT NULL DEFAULT '',
    mac            TEXT NOT NULL DEFAULT '',
    ips            TEXT NOT NULL DEFAULT '[]',
    none_detached  INTEGER NOT NULL DEFAULT 0,
    sandbox_id     TEXT NOT NULL DEFAULT '',
    sandbox_name   TEXT NOT NULL DEFAULT '',
    sandbox_ifname TEXT NOT NULL DEFAULT '',
    docker_host    TEXT NOT NULL DEFAULT '',
    created        REAL NOT NULL,
    updated        REAL NOT NULL,
    PRIMARY KEY (network, container_id, ifname)
);
CREATE INDEX IF NOT EXISTS attachments_docker_id ON attachments (docker_id);
"""


class StoreError(Exception):
    """The store cannot be opened, read or written."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class Attachment:
    network: str
    container_id: str
    ifname: str
    state: str = ADDING
    mode: str = "container"
    docker_network: str = ""
    network_id: str = ""
    network_name: str = ""
    docker_id: str = ""
    docker_name: str = ""
    endpoint_id: str = ""
    netns: str = ""
    netns_dev: int = 0
    netns_ino: int = 0
    interface: str = ""
    mac: str = ""
    ips: list[str] = field(default_factory=list)
    none_detached: bool = False
    sandbox_id: str = ""
    sandbox_name: str = ""
    sandbox_ifname: str = ""
    docker_host: str = ""  # the engine the attachment was made on
    created: float = 0.0
    updated: float = 0.0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.network, self.container_id, self.ifname)


_COLUMNS = [f.name for f in dataclasses.fields(Attachment)]


class Store:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, DB_NAME)
        self.marker = os.path.join(state_dir, MARKER_NAME)
        self._db: sqlite3.Connection | None = None

    # ---- opening ----------------------------------------------------------

    def open(self) -> Store:
        if self._db is not None:
            return self
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            os.makedirs(os.path.join(self.state_dir, "locks"), mode=0o700, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create state directory {self.state_dir}: {e.strerror}",
                             self.state_dir) from None
        new = not os.path.exists(self.path)
        if new and os.path.exists(self.marker):
            raise StoreError(
                f"state database {self.path} is missing, but {self.marker} shows it existed: "
                "the attachments it recorded are unknown. Restore it, or remove "
                f"{self.marker} to start with an empty store", self.path)
        old_umask = os.umask(0o077)
        try:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA synchronous = NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise StoreError(
                    f"state database {self.path} has schema {version}, newer than this "
                    f"cni2cnm ({SCHEMA_VERSION}); upgrade cni2cnm", self.path)
            if version < SCHEMA_VERSION or new:
                # Switching to WAL ignores the busy timeout: initialise one process at a time.
                with self._exclusive("init"):
                    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        db.execute("PRAGMA journal_mode = WAL")
                    if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                        db.executescript(_SCHEMA)
                        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise self._database_error(e, new) from None
        finally:
            os.umask(old_umask)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        if new:
            try:
                with open(self.marker, "x") as f:
                    f.write(uuid.uuid4().hex + "\n")
            except FileExistsError:
                pass
            except OSError as e:
                db.close()
                raise StoreError(f"cannot write {self.marker}: {e.strerror}", self.path) from None
        self._db = db
        return self

    def _database_error(self, e: sqlite3.DatabaseError, new: bool) -> StoreError:
        text = str(e)
        if "not a database" in text or "malformed" in text:
            aside = f"{self.path}.corrupt-{int(time.time())}"
            try:
                os.rename(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(self.path + suffix, aside + suffix)
                log.error("state database %s is corrupt (%s); moved it aside to %s",
                          self.path, text, aside)
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

    @contextlib.contextmanager
    def lock(self, container_id: str) -> Iterator[None]:
        """Serialise operations on one CNI container across processes."""
        with self._exclusive(hashlib.sha256(container_id.encode()).hexdigest()[:32]):
            yield

    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        path = os.path.join(self.state_dir, "locks", name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreError(f"cannot create lock file {path}: {e.strerror}", path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # ---- rows -------------------------------------------------------------

    def get(self, network: str, container_id: str, ifname: str) -> Attachment | None:
        row = self._query(
            f"SELECT {', '.join(_COLUMNS)} FROM attachments "
            "WHERE network = ? AND container_id = ? AND ifname = ?",
            (network, container_id, ifname),
        )
        return _row(row[0]) if row else None

    def list(self, network: str | None = None) -> list[Attachment]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM attachments"
        params: tuple[str, ...] = ()
        if network is not None:
            sql += " WHERE network = ?"
            params = (network,)
        sql += " ORDER BY created"
        return [_row(r) for r in self._query(sql, params)]

    def put(self, att: Attachment) -> Attachment:
        now = time.time()
        att.created = att.created or now
        att.updated = now
        values = [getattr(att, c) for c in _COLUMNS]
        values[_COLUMNS.index("ips")] = json.dumps(att.ips)
        values[_COLUMNS.index("none_detached")] = int(att.none_detached)
        self._execute(
            f"INSERT OR REPLACE INTO attachments ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
            values,
        )
        return att

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        self._execute(
            "DELETE FROM attachments WHERE network = ? AND container_id = ? AND ifname = ?",
            (network, container_id, ifname),
        )

    def _query(self, sql: str, params: tuple[object, ...] | list[object]) -> list[tuple]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read state database {self.path}: {e}", self.path) from None

    def _execute(self, sql: str, params: tuple[object, ...] | list[object]) -> None:
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(sql, params)
        except sqlite3.Error as e:
            raise StoreError(f"cannot write state database {self.path}: {e}", self.path) from None


def _row(row: tuple) -> Attachment:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["ips"] = json.loads(data["ips"] or "[]")
    data["none_detached"] = bool(data["none_detached"])
    return Attachment(**data)
