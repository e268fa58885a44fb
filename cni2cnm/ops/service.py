"""The systemd units `cni2cnm install` writes where systemd is PID 1: a socket unit that
makes the daemon's socket (root's, 0600, in a 0700 directory, as `cni2cnm serve` makes it)
and a service that systemd starts on the first connection, handing the socket over
(LISTEN_FDS). Elsewhere the plugin starts its daemon on demand and no unit is written.

The units are recorded in the install manifest like the plugin file; `install --uninstall`
stops and disables them and removes them while they are unchanged. After an upgrade,
`install` restarts the service if it runs, so the next request meets the new version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cni2cnm.daemon import starter
from cni2cnm.daemon.wire import DEFAULT_SOCKET

UNIT_DIR = "/etc/systemd/system"
SOCKET_UNIT = "cni2cnm.socket"
SERVICE_UNIT = "cni2cnm.service"
METRICS_EXAMPLE = "127.0.0.1:9584"

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def systemd_booted() -> bool:
    """sd_booted(): systemd is PID 1."""
    return os.path.isdir("/run/systemd/system")


@dataclass(frozen=True)
class Unit:
    path: str
    content: str


def units(socket_path: str = DEFAULT_SOCKET, unit_dir: str = UNIT_DIR,
          python: str | None = None, package_parent: str | None = None) -> list[Unit]:
    python = os.path.abspath(python or sys.executable)
    code = starter.serve_code(package_parent or starter.package_parent())
    socket_unit = f"""\
# Written by `cni2cnm install`: the socket of cni2cnm's warm daemon (root only).
[Unit]
Description=cni2cnm CNI plugin daemon socket

[Socket]
ListenStream={socket_path}
SocketUser=root
SocketGroup=root
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""
    service_unit = f"""\
# Written by `cni2cnm install`: cni2cnm's warm daemon, started by systemd on the first
# request (socket activation); the plugin runs requests in-process whenever it is down.
# Metrics (off by default): add --metrics-address {METRICS_EXAMPLE} to ExecStart.
[Unit]
Description=cni2cnm CNI plugin daemon
Requires={SOCKET_UNIT}
After={SOCKET_UNIT}

[Service]
Type=notify
ExecStart="{python}" -I -c "{code}" --socket {socket_path}
KillMode=mixed
TimeoutStopSec=300

[Install]
Also={SOCKET_UNIT}
"""
    return [Unit(os.path.join(unit_dir, SOCKET_UNIT), socket_unit),
            Unit(os.path.join(unit_dir, SERVICE_UNIT), service_unit)]


def _systemctl(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def activate(changed: bool, run: Runner = _systemctl) -> list[str]:
    """After the units are written: reload, enable and start the socket; restart the service
    if it runs and the units changed (an upgrade). Returns what failed, if anything."""
    steps: list[list[str]] = [["daemon-reload"], ["enable", "--now", SOCKET_UNIT]]
    if changed:
        steps.append(["try-restart", SERVICE_UNIT])
    return _run_all(steps, run)


def deactivate(run: Runner = _systemctl) -> list[str]:
    """Before the units are removed: stop and disable both."""
    return _run_all([["disable", "--now", SOCKET_UNIT, SERVICE_UNIT]], run)


def reload(run: Runner = _systemctl) -> list[str]:
    return _run_all([["daemon-reload"]], run)


def _run_all(steps: list[list[str]], run: Runner) -> list[str]:
    failed = []
    for args in steps:
        try:
            res = run(args)
        except (OSError, subprocess.SubprocessError) as e:
            failed.append(f"systemctl {' '.join(args)}: {e}")
            continue
        if res.returncode != 0:
            failed.append(f"systemctl {' '.join(args)}: {(res.stderr or '').strip()}")
    return failed


def installed_units(state_dir: str, unit_dir: str = UNIT_DIR) -> list[str]:
    """The unit files the install manifest records in `unit_dir`."""
    from cni2cnm.ops.install import read_manifest

    names = {os.path.join(os.path.abspath(unit_dir), n) for n in (SOCKET_UNIT, SERVICE_UNIT)}
    return sorted(p for p in read_manifest(state_dir) if p in names)


def remove_units(state_dir: str, unit_dir: str = UNIT_DIR) -> list[tuple[str, str, str]]:
    """Remove the recorded unit files while unchanged: (path, action, note) for each."""
    from cni2cnm.ops.files import sha256_of
    from cni2cnm.ops.install import ABSENT, KEPT, REMOVED, read_manifest, write_manifest

    manifest = read_manifest(state_dir)
    done = []
    for path in installed_units(state_dir, unit_dir):
        current = sha256_of(path)
        if current is None and not os.path.lexists(path):
            done.append((path, ABSENT, "already gone"))
            del manifest[path]
        elif current == manifest[path].get("sha256"):
            os.unlink(path)
            done.append((path, REMOVED, ""))
            del manifest[path]
        else:
            done.append((path, KEPT, "changed since cni2cnm installed it"))
    if done:
        write_manifest(state_dir, manifest)
    return done
