"""cni2cnm.daemon.status: the daemon as `cni2cnm version` and `doctor` report it."""

from __future__ import annotations

import os
from pathlib import Path

from cni2cnm import __version__
from cni2cnm.daemon import wire

from .conftest import (
    Recorder,
    serving,
)


def test_status_reports_the_daemon_for_version_and_doctor(sockdir: Path) -> None:
    from cni2cnm.daemon import status
    from cni2cnm.ops.doctor import check_daemon

    path = sockdir / "d.sock"
    absent = status.probe(str(path))
    assert not absent.running and absent.note == "no socket"
    assert check_daemon(str(path)).status == "OK"  # the plugin starts one when needed
    with serving(path, Recorder(), started=wire.ON_DEMAND, metrics_address="127.0.0.1:1"):
        st = status.probe(str(path))
        check = check_daemon(str(path))
    assert st.running and st.current and st.pid == os.getpid()
    assert (st.started, st.metrics, st.version) == (wire.ON_DEMAND, "127.0.0.1:1", __version__)
    assert "started on-demand" in st.describe()
    # the metrics address it names does not answer: a warning, never a failure
    assert check.status == "WARN" and "/healthz does not answer" in check.message
    assert status.stop_on_demand(str(path), stale_only=True) is None  # current: kept

