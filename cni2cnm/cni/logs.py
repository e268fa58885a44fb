"""Logging that never touches stdout: stderr by default, or a log file."""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
from typing import TextIO

LOGGER_NAME = "cni2cnm"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_FORMAT = "%(asctime)s cni2cnm[%(process)d] %(levelname)s %(name)s: %(message)s"

def _level(name: str | None, default: int) -> int:
    return LEVELS.get((name or "").lower(), default)


def setup(log_file: str | None = None, log_level: str | None = None) -> logging.Logger:
    """Configure the package logger. CNI2CNM_LOG_LEVEL overrides the config's level."""
    logger = logging.getLogger(LOGGER_NAME)
    level = _level(os.environ.get("CNI2CNM_LOG_LEVEL") or log_level, logging.WARNING)
    logger.setLevel(level)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    handler: logging.Handler
    if log_file:
        try:
            handler = _LogFileHandler(open_log(log_file))
        except (OSError, ValueError) as e:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(handler)
            logger.warning("cannot open logFile %s (%s); logging to stderr", log_file, e)
            return logger
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    return logger


class _LogFileHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on a file open_log opened; closing it closes the file (a long-running
    daemon sets logging up again for every request)."""

    def close(self) -> None:
        self.acquire()
        try:
            stream = self.stream
            self.stream = None  # type: ignore[assignment]
            if stream is not None:
                stream.close()
        finally:
            self.release()
            super().close()


def file_handler(path: str) -> logging.Handler:
    """A handler appending to the log file `path`, opened as open_log does."""
    handler = _LogFileHandler(open_log(path))
    handler.setFormatter(logging.Formatter(_FORMAT))
    return handler


def open_log(path: str) -> TextIO:
    """Open the log file for appending, private: created 0600, never through a symbolic link
    (O_NOFOLLOW), only a regular file (a FIFO or device is refused, without blocking), and
    made 0600 when an existing file we own is readable by others (it holds container IDs,
    namespaces and addresses)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
    except BaseException:
        os.close(fd)
        raise
