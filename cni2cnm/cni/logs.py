"""Logging that never touches stdout: stderr by default, or a log file."""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
from typing import Literal, TextIO, get_args

from cni2cnm.cni.errors import CNIError, Code

LOGGER_NAME = "cni2cnm"
# The levels a config's logLevel, CNI2CNM_LOG_LEVEL and `serve --log-level` name.
LogLevel = Literal["debug", "info", "warning", "error"]
LEVELS: dict[str, int] = {name: logging.getLevelNamesMapping()[name.upper()]
                          for name in get_args(LogLevel)}
FORMAT = "%(asctime)s cni2cnm[%(process)d] %(levelname)s %(name)s: %(message)s"
DEFAULT_LEVEL = logging.WARNING  # without CNI2CNM_LOG_LEVEL and logLevel


def level(name: str | None) -> int | None:
    """The logging level `name` (any case) names; None for no name or an unknown one."""
    return LEVELS.get((name or "").lower())


def setup(log_file: str | None = None, log_level: str | None = None) -> logging.Logger:
    """Configure the package logger. CNI2CNM_LOG_LEVEL overrides the config's level. A
    logFile that cannot be used safely is a CNIError (code 7), logged to stderr."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level(os.environ.get("CNI2CNM_LOG_LEVEL") or log_level) or DEFAULT_LEVEL)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    handler: logging.Handler = _formatted(logging.StreamHandler(sys.stderr))
    refused: CNIError | None = None
    if log_file:
        try:
            handler = file_handler(log_file)
        except (OSError, ValueError) as e:
            refused = log_file_error(log_file, e)
    logger.addHandler(handler)
    if refused is not None:
        raise refused
    return logger


def log_file_error(path: str, e: BaseException) -> CNIError:
    """The CNI error for a logFile file_handler refused or could not open."""
    reason = "a symbolic link" if getattr(e, "errno", None) == errno.ELOOP else (
        getattr(e, "strerror", None) or str(e))
    return CNIError(Code.INVALID_CONFIG, "unusable logFile",
                    f"logFile {path}: {reason}; the plugin appends only to a regular file of "
                    "its own user (root), with one link, not writable by group or others "
                    "(it is created 0600 when missing)")


class _LogFileHandler(logging.StreamHandler[TextIO]):
    """A handler on a file open_append opened; closing it closes the file (a long-running
    daemon sets logging up again for every request)."""

    def close(self) -> None:
        self.acquire()
        try:
            stream: TextIO | None = self.stream
            # None: a flush() after the close does nothing (it skips a None stream) instead of
            # failing on a closed file; typeshed types the attribute without None.
            self.stream = None  # type: ignore[assignment]
            if stream is not None:
                stream.close()
        finally:
            self.release()
            super().close()


def file_handler(path: str) -> logging.Handler:
    """A handler in FORMAT appending to the log file `path`, opened as open_append opens it:
    the one way a log file is opened."""
    return _formatted(_LogFileHandler(_open_text(path)))


def _formatted(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def _open_text(path: str) -> TextIO:
    return os.fdopen(open_append(path), "a", encoding="utf-8", errors="backslashreplace")


def open_append(path: str) -> int:
    """A descriptor appending to `path`, a file root writes by path (log files, the daemon's
    fallbacks file). Never through a symbolic link (O_NOFOLLOW); created 0600 when missing;
    an existing one must be a regular file (a FIFO or device is refused, without blocking)
    owned by this user (root), with one link (not a hard link to a file someone else can
    read), not writable by group or others: otherwise its owner could read what root logs
    (container IDs, namespaces, addresses) or inject lines. One readable by others is made
    0600. Raises OSError saying why."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        refusal = _untrusted(st)
        if refusal:
            raise OSError(errno.EPERM, refusal)
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _untrusted(st: os.stat_result) -> str:
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by uid {os.geteuid()}"
    if st.st_nlink != 1:
        return f"{st.st_nlink} hard links to it"
    if mode & 0o022:
        return f"writable by group or others (mode {mode:04o})"
    return ""
