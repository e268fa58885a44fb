"""Files root appends to are root's alone (issue 19, item 9): a logFile (or the daemon's
fallbacks file) owned by another user, with another link, or writable by group or others is
refused, code 7 naming the file; nothing is written to it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cni2cnm.cni import logs
from cni2cnm.cni.errors import CNIError
from cni2cnm.daemon import logroute


def refusal(path: Path) -> str:
    with pytest.raises(CNIError) as e:
        logs.setup(str(path), "info")
    logs.setup()
    assert e.value.code == 7 and str(path) in e.value.details
    return e.value.details


@pytest.fixture
def other_users(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a file of another user")  # unit tests run as root
    return tmp_path


def test_a_file_of_another_user_is_refused(other_users: Path) -> None:
    f = other_users / "planted.log"
    f.write_text("")
    os.chown(f, 65534, 65534)
    f.chmod(0o600)
    assert "owned by uid 65534" in refusal(f)
    assert f.read_text() == ""


def test_a_group_or_other_writable_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "open.log"
    f.write_text("")
    for mode in (0o666, 0o620, 0o602):
        f.chmod(mode)
        assert f"writable by group or others (mode {mode:04o})" in refusal(f)
    assert f.read_text() == ""


def test_a_file_with_another_link_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "a.log"
    f.write_text("")
    f.chmod(0o600)
    os.link(f, tmp_path / "b")
    assert "2 hard links" in refusal(f)


def test_the_daemon_refuses_the_same_files(tmp_path: Path) -> None:
    f = tmp_path / "open.log"
    f.write_text("")
    f.chmod(0o666)
    rlog = logroute.RequestLog(None)
    with pytest.raises(CNIError) as e:
        rlog.configure(str(f), "info")
    assert e.value.code == 7 and "writable by group or others" in e.value.details


def test_a_missing_file_is_created_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        fd = logs.open_append(str(tmp_path / "new.log"))
    finally:
        os.umask(old)
    os.close(fd)
    assert (tmp_path / "new.log").stat().st_mode & 0o777 == 0o600
