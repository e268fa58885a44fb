"""Logging that never touches stdout: stderr by default, or a log file."""

from __future__ import annotations

import logging
import os
import sys

LOGGER_NAME = "cni2cnm"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_FORMAT = "%(asctime)s cni2cnm[%(process)d] %(levelname)s %(name)s: %(message)s"


def _level(name: str | None, default: int) -> int:
    return _LEVELS.get((name or "").lower(), default)


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
