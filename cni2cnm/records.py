"""What the store records: one Attachment per (CNI network, CNI container ID, ifname), and
its SQLite schema. Records are values (frozen): a change is a new record, written by one of
the store's named transitions."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

ADDING = "adding"  # ADD's intent: written before the engine is changed
ATTACHED = "attached"
DELETING = "deleting"  # a DEL that could not finish (engine unreachable): cni2cnm finishes it
SANDBOX_GONE = "sandbox-gone"  # proxy mode: the sandbox ended; the pod's interface was removed

SCHEMA = """
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
CREATE INDEX IF NOT EXISTS attachments_state ON attachments (state, mode);
"""


@dataclass(frozen=True)
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


COLUMNS = [f.name for f in dataclasses.fields(Attachment)]


def attachment_of(row: tuple[Any, ...]) -> Attachment:
    data = dict(zip(COLUMNS, row, strict=True))
    data["ips"] = json.loads(data["ips"] or "[]")
    data["none_detached"] = bool(data["none_detached"])
    return Attachment(**data)
