"""What the operator CLI does, without click: each module returns data and raises OpError.

    inspect.py       recorded attachments joined with the engine's live state and the
                     runtime's cache
    inspect_rows.py  inspect's rows as a typed model (the JSON schema), its drift kinds, table
    resultcache.py   the runtime's result cache (libcni's, and the CLI's own): the one reader
                     and writer of its format
    invoke.py        ADD/CHECK/DEL/GC/STATUS through the plugin's own dispatcher, as a
                     runtime would
    conflist.py      a ready conflist for an existing Docker network
    install.py       the plugin executable and a conflist on a node, and their removal
    service.py       the systemd units of the daemon (`install --systemd`)
    trust.py         whether the files root would run as the plugin are root's alone
    doctor.py        checks of a node's setup, one line each
    files.py         reading and atomically writing the files these touch

cni2cnm/cli/ turns these into commands and every error into one line on stderr, with the
exit statuses below.
"""

from __future__ import annotations

import hashlib

NETNS_ID_PREFIX = "cni2cnm-"

# Every CLI command's exit status.
EXIT_OK = 0
EXIT_FOUND = 1  # the command ran and found a problem (drift, a FAIL, the plugin's CNI error)
EXIT_ERROR = 2  # the command could not do its job


class OpError(Exception):
    """A failure the CLI reports as one line on stderr, exiting with EXIT_ERROR."""


def netns_container_id(path: str) -> str:
    """The CNI container ID the CLI gives a bare namespace path, made like cnitool's:
    a prefix and 20 hex digits of the SHA-512 of the path."""
    return NETNS_ID_PREFIX + hashlib.sha512(path.encode()).hexdigest()[:20]
