"""Files in the state directory, as root must handle them: the store's errors (StoreError,
StoreBusy), lock files opened without following links, waited for with a deadline and removed
only while nobody holds them, and the directory fsync that makes a rename durable."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time


class StoreError(Exception):
    """The store cannot be opened, read or written (CNI code 5)."""

    busy = False  # True: a lock wait timed out, "try again later" (CNI code 11)

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class StoreBusy(StoreError):
    """Another operation held a lock for longer than the lock timeout (CNI code 11: retry)."""

    busy = True


def open_lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"lock file {path} is a symbolic link: cni2cnm never follows "
                             "links in its state directory; remove it", path) from None
        raise StoreError(f"cannot create lock file {path}: {e.strerror}", path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"lock file {path} is not a regular file; remove it", path)
    return fd


def lstat_or_none(path: str) -> os.stat_result | None:
    """lstat (never following a link); None when nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}", path) from None


def still_named(fd: int, path: str) -> bool:
    """Whether `path` is still the file `fd` has open (not removed or replaced since)."""
    st = lstat_or_none(path)
    if st is None:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def remove_if_free(path: str) -> None:
    """Remove a lock file nobody holds, by the same protocol as Store.lock."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if still_named(fd, path):
            os.unlink(path)
    except (OSError, StoreError):
        pass
    finally:
        os.close(fd)


def flock_within(fd: int, path: str, left: float, timeout: float, what: str) -> None:
    """An exclusive flock, waited for at most `left` seconds (StoreBusy after)."""
    deadline = time.monotonic() + left
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as e:
            raise StoreError(f"cannot lock {path}: {e.strerror}", path) from None
        now = time.monotonic()
        if now >= deadline:
            raise StoreBusy(f"busy: another operation on {what} has held its lock {path} for "
                            f"{timeout:g} s; retry", path)
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 0.05)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
