"""Fault-injection points for the integration tests."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping

log = logging.getLogger("cni2cnm.testhook")


def stop_point(environ: Mapping[str, str], name: str) -> None:
    """With CNI2CNM_TEST_STOP_AT=<name> the process stops itself (SIGSTOP) there, so a test
    can kill it or the engine at an exact step and then let it continue."""
    if environ.get("CNI2CNM_TEST_STOP_AT") == name:
        log.warning("stopping at test point %s (CNI2CNM_TEST_STOP_AT)", name)
        os.kill(os.getpid(), signal.SIGSTOP)
