"""The integration tests' fault-injection hook, out of reach of a normal installation.

`stop_point(environ, name)` makes the process stop itself (SIGSTOP) at a named step, so a
test can kill it, or the engine, at an exact point and then let it continue. The plugin runs
as root with whatever environment the runtime has, so one variable must not be enough to
hang pods on a node. The hook fires only when ALL of these hold:

1. `CNI2CNM_TEST_STOP_AT` is `name`;
2. this package is imported from a source checkout (next to it: `pyproject.toml` and
   `tests/integration/`), not from an installed wheel;
3. `CNI2CNM_TEST_HOOKS` is the absolute path of a regular file (not a symbolic link) owned
   by root, not writable by group or others, whose content is exactly `ARMED`: only root
   can make one, and only a test does (`armed_hooks` in tests/integration/pluginrun.py).

Outside the tests, 1 costs one dictionary lookup and nothing else is looked at. STOP_AT_ENV is
the one spelling of the variable: the executable's forwarding path (daemon/wire.py, standard
library only) imports it from here, so this module imports nothing more at its top than `os`
and `stat` (which `os` has loaded already).
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # collections.abc would cost the executable's forwarding path
if TYPE_CHECKING:
    from collections.abc import Mapping

STOP_AT_ENV = "CNI2CNM_TEST_STOP_AT"
ARMED_ENV = "CNI2CNM_TEST_HOOKS"
ARMED = b"cni2cnm test hooks armed\n"


def stop_point(environ: Mapping[str, str], name: str) -> None:
    """Stop this process at test point `name` when a test armed the hook (see above)."""
    if environ.get(STOP_AT_ENV) != name:
        return
    import logging
    import signal

    log = logging.getLogger("cni2cnm.testhook")
    if not armed(environ):
        log.warning("%s=%s ignored: test hooks are not armed in this installation",
                    STOP_AT_ENV, name)
        return
    log.warning("stopping at test point %s (%s)", name, STOP_AT_ENV)
    os.kill(os.getpid(), signal.SIGSTOP)


def from_source_checkout() -> bool:
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (os.path.isfile(os.path.join(top, "pyproject.toml"))
            and os.path.isdir(os.path.join(top, "tests", "integration")))


def armed(environ: Mapping[str, str]) -> bool:
    path = environ.get(ARMED_ENV, "")
    if not path.startswith("/") or "\0" in path or not from_source_checkout():
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError, UnicodeError):
        return False
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != 0
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return False
        return os.read(fd, len(ARMED) + 1) == ARMED
    except OSError:
        return False
    finally:
        os.close(fd)
