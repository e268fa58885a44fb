"""The systemd units `cni2cnm install` writes (ops/service.py), without systemd: their text,
the systemctl steps (a fake runner), and their removal by the manifest's checksums."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from cni2cnm.ops import install as inst
from cni2cnm.ops import service


def test_units_make_a_root_only_socket_and_run_this_installation(tmp_path: Path) -> None:
    sock, svc = service.units("/run/c2c/d.sock", str(tmp_path), python="/opt/py/bin/python3",
                              package_parent="/opt/pkgs")
    assert sock.path == str(tmp_path / "cni2cnm.socket")
    for line in ("ListenStream=/run/c2c/d.sock", "SocketMode=0600", "DirectoryMode=0700",
                 "SocketUser=root", "WantedBy=sockets.target"):
        assert line in sock.content.splitlines()
    exec_start = next(ln for ln in svc.content.splitlines() if ln.startswith("ExecStart="))
    assert exec_start.startswith('ExecStart="/opt/py/bin/python3" -I -c "import sys; '
                                 "sys.path.insert(0, '/opt/pkgs'); ")
    assert exec_start.endswith('" --socket /run/c2c/d.sock')
    assert "Requires=cni2cnm.socket" in svc.content and "Type=notify" in svc.content
    assert "--metrics-address 127.0.0.1:9584" in svc.content  # shown, off by default


class FakeSystemctl:
    def __init__(self, fail: str = "") -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        rc = 1 if self.fail and self.fail in args else 0
        return subprocess.CompletedProcess(["systemctl", *args], rc, "", "boom" if rc else "")


def test_activate_restarts_the_service_only_when_the_units_changed() -> None:
    run = FakeSystemctl()
    assert service.activate(False, run) == []
    assert run.calls == [["daemon-reload"], ["enable", "--now", "cni2cnm.socket"]]
    run = FakeSystemctl()
    service.activate(True, run)
    assert run.calls[-1] == ["try-restart", "cni2cnm.service"]
    failing = FakeSystemctl(fail="enable")
    assert service.activate(False, failing) == ["systemctl enable --now cni2cnm.socket: boom"]


def test_deactivate_stops_both_units() -> None:
    run = FakeSystemctl()
    service.deactivate(run)
    assert run.calls == [["disable", "--now", "cni2cnm.socket", "cni2cnm.service"]]


def test_units_are_recorded_and_removed_while_unchanged(tmp_path: Path) -> None:
    unit_dir, state = tmp_path / "units", str(tmp_path / "state")
    unit_dir.mkdir()
    units = service.units("/run/c2c/d.sock", str(unit_dir))
    inst.install([inst.Planned(u.path, u.content, 0o644) for u in units], state, False)
    assert service.installed_units(state, str(unit_dir)) == sorted(u.path for u in units)
    Path(units[1].path).write_text("# edited by the operator\n")
    done = service.remove_units(state, str(unit_dir))
    assert {(Path(p).name, a) for p, a, _ in done} == {("cni2cnm.socket", inst.REMOVED),
                                                      ("cni2cnm.service", inst.KEPT)}
    assert not Path(units[0].path).exists() and Path(units[1].path).exists()
