"""Logging that never touches stdout: stderr by default, or a log file."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar

LOGGER_NAME = "cni2cnm"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_FORMAT = "%(asctime)s cni2cnm[%(process)d] %(levelname)s %(name)s: %(message)s"

# A process that runs several requests at once (`cni2cnm serve`) routes each request's log
# itself: while this holds a function in the current context (the request's thread), setup()
# calls it with the request's logFile and logLevel instead of reconfiguring the logger.
route: ContextVar[Callable[[str | None, str | None], None] | None] = ContextVar(
    "cni2cnm_log_route", default=None)


def _level(name: str | None, default: int) -> int:
    return _LEVELS.get((name or "").lower(), default)


def setup(log_file: str | None = None, log_level: str | None = None) -> logging.Logger:
    """Configure the package logger. CNI2CNM_LOG_LEVEL overrides the config's level."""
    logger = logging.getLogger(LOGGER_NAME)
    routed = route.get()
    if routed is not None:
        routed(log_file, log_level)
        return logger
    level = _level(os.environ.get("CNI2CNM_LOG_LEVEL") or log_level, logging.WARNING)
    logger.setLevel(level)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    handler: logging.Handler
    if log_file:
        try:
            handler = logging.FileHandler(log_file)
        except OSError as e:
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
