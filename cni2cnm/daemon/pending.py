"""DELs the static shim kept for the daemon: finished when the daemon starts.

A shim (shim/cni2cnm-shim.c) that finds no daemon and no Python plugin beside it cannot run a
DEL, and a DEL must not be lost: it writes the request, in the wire format of a request
(wire.request: environment and stdin), to `<socket dir>/pending/del-<time>-<pid>` (directory
0700, file 0600, created O_EXCL, fsync'd, then renamed into place) and answers 0. The daemon
runs each of these, oldest first, once its socket is bound (`replay`), and removes the file
once the DEL succeeded; a DEL that failed stays for the next start (and is logged).

Only what the shim could have written is run: a regular file of this user, not linked
elsewhere, not readable by others, at most a request's size, naming CNI_COMMAND=DEL, in a
directory of this user that nobody else can enter.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable

from cni2cnm.daemon import wire

log = logging.getLogger("cni2cnm-serve")

PENDING_DIR = "pending"  # in the socket's directory (the shim's PENDING_DIR)
MAX_FILE = 4 + wire.MAX_ENV + wire.MAX_STDIN

Handler = Callable[[dict[str, str], bytes], tuple[int, str, str]]


def directory(socket_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(socket_path)), PENDING_DIR)


def replay(socket_path: str, handler: Handler) -> dict[str, int]:
    """Run the kept DELs; returns how many were done, failed and refused."""
    counts = {"done": 0, "failed": 0, "refused": 0}
    top = directory(socket_path)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return counts
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        log.error("not running the DELs kept in %s: it is not a directory of this user alone "
                  "(uid %d, mode %04o)", top, st.st_uid, stat.S_IMODE(st.st_mode))
        return counts
    for name in sorted(n for n in os.listdir(top) if n.startswith("del-")):
        path = os.path.join(top, name)
        outcome = _replay_one(path, handler)
        counts[outcome] += 1
        if outcome != "failed":
            _remove(path)
    if any(counts.values()):
        log.info("DELs kept by the shim in %s: %d done, %d failed (kept for the next start), "
                 "%d refused", top, counts["done"], counts["failed"], counts["refused"])
    return counts


def _replay_one(path: str, handler: Handler) -> str:
    try:
        body = _read_own(path)
        env, data = wire.parse_request(body)
    except (OSError, ValueError, wire.WireError) as e:
        log.error("removing %s without running it: %s", path, e)
        return "refused"
    if env.get("CNI_COMMAND") != "DEL":
        log.error("removing %s without running it: CNI_COMMAND is %r, only DELs are kept",
                  path, env.get("CNI_COMMAND"))
        return "refused"
    env = {k: v for k, v in env.items() if k not in wire.LOCAL_ONLY_ENV}
    status, out, _err = handler(env, data)
    container = env.get("CNI_CONTAINERID", "?")
    if status != 0:
        log.warning("DEL of %s kept in %s failed (exit %d): %s", container, path, status,
                    out.strip()[:500])
        return "failed"
    log.info("DEL of %s kept in %s: done", container, path)
    return "done"


def _read_own(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1
                or st.st_mode & 0o077):
            raise ValueError(f"not a file the shim wrote (uid {st.st_uid}, mode "
                             f"{stat.S_IMODE(st.st_mode):04o}, {st.st_nlink} links)")
        if st.st_size > MAX_FILE:
            raise ValueError(f"{st.st_size} bytes, more than a request ({MAX_FILE})")
        return os.read(fd, MAX_FILE + 1)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as e:
        log.error("cannot remove %s: %s", path, e.strerror)
