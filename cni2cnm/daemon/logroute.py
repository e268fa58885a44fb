"""Each request's log, in a daemon that runs several requests at once.

In-process, cni.logs.setup() points the "cni2cnm" logger at stderr or the config's logFile,
at the request's level. In the daemon, one handler stays on that logger for the daemon's life
(`install`) and sends each record to the log of the request whose thread logged it, found in a
context variable: its own buffer (returned to the executable as its stderr) or its own
logFile, at its own level. The dispatcher hands each request's config to RequestLog.configure
(runner.py passes it as `on_config`), so no request touches a handler another request uses.

The level: the request's CNI2CNM_LOG_LEVEL, else the daemon's, else the config's logLevel,
else warning, as in-process.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

from cni2cnm.cni import logs

_FORMAT = logging.Formatter(logs.FORMAT)


class RequestLog:
    """One request's log: a buffer for its stderr, or its logFile; and its level."""

    def __init__(self, forced_level: str | None) -> None:
        self.forced = logs.level(forced_level)
        self.level = self.forced or logs.DEFAULT_LEVEL
        self.stream = io.StringIO()
        self.file: logging.Handler | None = None

    def configure(self, log_file: str | None, log_level: str | None) -> None:
        """logs.setup() for this request."""
        if self.forced is None:
            self.level = logs.level(log_level) or logs.DEFAULT_LEVEL
        self.close_file()
        if log_file:
            try:
                self.file = logs.file_handler(log_file)  # root's alone, never through a link
            except (OSError, ValueError) as e:
                raise logs.log_file_error(log_file, e) from None

    def write(self, record: logging.LogRecord) -> None:
        if record.levelno < self.level:
            return
        if self.file is not None:
            self.file.handle(record)
        else:
            self.stream.write(_FORMAT.format(record) + "\n")

    def close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


_current: ContextVar[RequestLog | None] = ContextVar("cni2cnm_request_log", default=None)


class _Router(logging.Handler):
    """The "cni2cnm" logger's one handler in the daemon: the current request's log."""

    def emit(self, record: logging.LogRecord) -> None:
        current = _current.get()
        if current is not None:
            current.write(record)


def install() -> None:
    """Route the "cni2cnm" logger per request from now on (the daemon, at start)."""
    logger = logging.getLogger(logs.LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.addHandler(_Router())
    logger.setLevel(logging.DEBUG)  # each request's log applies its own level
    logger.propagate = False


@contextlib.contextmanager
def request(env: Mapping[str, str], daemon_level: str | None) -> Iterator[RequestLog]:
    """The current context's request log, for the request with environment `env`."""
    rlog = RequestLog(env.get("CNI2CNM_LOG_LEVEL") or daemon_level)
    token = _current.set(rlog)
    try:
        yield rlog
    finally:
        _current.reset(token)
        rlog.close_file()
