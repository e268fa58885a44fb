"""Directories that hold what root relies on (the state directory, the daemon's socket
directory, install's manifest), made and checked component by component from `/`.

Whoever can write a directory on the way to a path can swap what lies below it (a
symbolic link to another root-owned directory is enough for root to write its state
there). So `ensure_dir` walks the path from `/` with one `open(O_NOFOLLOW | O_DIRECTORY)`
per component, relative to the directory before it, and

- refuses a symbolic link anywhere on the way (the path must name the directory itself);
- creates what is missing relative to its parent's file descriptor, with an explicit
  `fchmod` (parents 0755, the directory itself the mode asked for), never the umask;
- checks each component on its descriptor: owned by root (or by the user running, for a
  directory of their own), and not writable by group or others, except a sticky directory
  above the last one (like /tmp: no one but root can rename or remove root's entries there).

The same component rule (`component_problem`) is what `cni2cnm install` applies to the code
the plugin runs (cni2cnm.ops.trust).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

PARENT_MODE = 0o755


class UnsafeDir(Exception):
    """A directory cannot be made, or others than its owner could change it."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


def component_problem(st: os.stat_result, owners: frozenset[int], sticky_ok: bool
                      ) -> str | None:
    """Why one file or directory (not a link) could be changed by others; None if it cannot.
    `sticky_ok`: a sticky directory writable by others is accepted (it is above the path)."""
    if st.st_uid not in owners:
        who = " or ".join(f"uid {u}" for u in sorted(owners))
        return f"is owned by uid {st.st_uid}, not {'root' if owners == {0} else who}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            if sticky_ok:
                return None
            return (f"is a sticky directory writable by others (mode {mode:04o}, like /tmp): "
                    "anyone can create entries there")
        return f"is writable by group or others (mode {mode:04o})"
    return None


def ensure_dir(path: str, mode: int = 0o700) -> None:
    """Make `path` (and its missing parents) and check every component, as described above.
    UnsafeDir names the component and the fix."""
    fd = open_dir(path, mode)
    if fd is not None:
        os.close(fd)


def problem_of(path: str) -> UnsafeDir | None:
    """What ensure_dir would refuse in the components of `path` that exist (nothing is made):
    for checks that must not change the node (`cni2cnm doctor`)."""
    try:
        fd = open_dir(path, create=False)
    except UnsafeDir as e:
        return e
    if fd is not None:
        os.close(fd)
    return None


def open_dir(path: str, mode: int = 0o700, create: bool = True) -> int | None:
    """ensure_dir, returning a descriptor (O_DIRECTORY) of the checked directory; None when
    not `create` and a component is missing (those above it were checked)."""
    if not path.startswith("/"):
        path = os.path.abspath(path)
    try:
        parts = [p for p in os.path.normpath(path).split("/") if p]
    except ValueError as e:
        raise UnsafeDir(f"invalid directory {path!r}: {e}", path) from None
    owners = frozenset({0, os.geteuid()})
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    here = "/"
    try:
        _check(fd, here, owners, last=not parts)
        for i, name in enumerate(parts):
            here = os.path.join(here, name)
            last = i == len(parts) - 1
            child = _open_or_make(fd, name, here, mode if last else PARENT_MODE, create)
            os.close(fd)
            if child is None:
                return None
            fd = child
            _check(fd, here, owners, last=last)
    except BaseException:
        os.close(fd)
        raise
    return fd


_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_or_make(parent: int, name: str, path: str, mode: int, create: bool) -> int | None:
    for _ in range(3):  # made or removed by someone else in between: look again
        try:
            return os.open(name, _OPEN, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as e:
            raise _open_error(parent, name, path, e) from None
        try:
            os.mkdir(name, 0o700, dir_fd=parent)  # 0700 until fchmod: never wider meanwhile
        except FileExistsError:
            continue
        except (OSError, UnicodeError) as e:
            raise UnsafeDir(f"cannot create {path}: {getattr(e, 'strerror', None) or e}",
                            path) from None
        try:
            fd = os.open(name, _OPEN, dir_fd=parent)
        except OSError as e:
            raise _open_error(parent, name, path, e) from None
        try:
            os.fchmod(fd, mode)
        except OSError as e:
            os.close(fd)
            raise UnsafeDir(f"cannot set the mode of {path}: {e.strerror}", path) from None
        return fd
    raise UnsafeDir(f"{path} keeps appearing and disappearing; is something else creating "
                    "and removing it?", path)


def _open_error(parent: int, name: str, path: str, e: OSError) -> UnsafeDir:
    st = None
    with contextlib.suppress(OSError):
        st = os.lstat(name, dir_fd=parent)
    if st is not None and stat.S_ISLNK(st.st_mode):
        return UnsafeDir(f"{path} is a symbolic link: cni2cnm never follows links to the "
                         "directories it keeps root's state in (whoever made it chooses where "
                         f"root writes). Fix: remove the link (rm {path}) or name the real "
                         "directory", path)
    if e.errno == errno.ENOTDIR or (st is not None and not stat.S_ISDIR(st.st_mode)):
        return UnsafeDir(f"{path} is not a directory; remove it or choose another path", path)
    return UnsafeDir(f"cannot open {path}: {e.strerror}", path)


def _check(fd: int, path: str, owners: frozenset[int], last: bool) -> None:
    st = os.fstat(fd)
    why = component_problem(st, owners, sticky_ok=not last)
    if why is None:
        return
    raise UnsafeDir(f"{path} {why}: others than root could swap what lies below it. Fix: "
                    f"chown root:root {path} && chmod go-w {path} (or choose a directory "
                    "whose every parent only root can write)", path)
