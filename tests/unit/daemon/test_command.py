"""`cni2cnm serve` (daemon/command.py): a daemon that cannot serve ends as every CLI command
that cannot do its job does: one `cni2cnm: error:` line on stderr, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("no_color", ["", "1"])
def test_cannot_serve_is_the_cli_error_line_and_status_2(sockdir: Path, no_color: str) -> None:
    blocker = sockdir / "file"
    blocker.write_text("")
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": no_color}
    proc = subprocess.run([sys.executable, "-m", "cni2cnm.daemon", "--socket",
                           str(blocker / "d.sock")], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (
        f"cni2cnm: error: the socket's directory: {blocker} is not a directory; remove it or "
        "choose another path")
