"""What the operator CLI does, without click: each module returns data and raises OpError.

    inspect.py   recorded attachments joined with the engine's live state and the runtime's cache
    invoke.py    ADD/CHECK/DEL/GC/STATUS through the plugin's own dispatcher, as a runtime would
    conflist.py  a ready conflist for an existing Docker network
    install.py   the plugin executable and a conflist on a node, and their removal
    doctor.py    checks of a node's setup, one line each

cni2cnm/cli.py turns these into commands and every error into one line on stderr.
"""

from __future__ import annotations

import hashlib

NETNS_ID_PREFIX = "cni2cnm-"


class OpError(Exception):
    """A failure the CLI reports as one line on stderr, exiting with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def netns_container_id(path: str) -> str:
    """The CNI container ID the CLI gives a bare namespace path, made like cnitool's:
    a prefix and 20 hex digits of the SHA-512 of the path."""
    return NETNS_ID_PREFIX + hashlib.sha512(path.encode()).hexdigest()[:20]
