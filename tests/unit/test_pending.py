"""The DELs the static shim kept for the daemon (cni2cnm/daemon/pending.py): run once the
daemon serves, removed when done, kept when they failed, refused unless the shim could have
written them."""

from __future__ import annotations

import os
from pathlib import Path

from cni2cnm.daemon import pending, wire

CONF = b'{"cniVersion": "1.0.0", "name": "n", "type": "cni2cnm"}'


class Handler:
    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.calls: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, env: dict[str, str], data: bytes) -> tuple[int, str, str]:
        self.calls.append((env, data))
        return self.status, "" if self.status == 0 else '{"code": 11}\n', ""


def keep(top: Path, name: str, command: str = "DEL", mode: int = 0o600, **env: str) -> Path:
    top.mkdir(mode=0o700, exist_ok=True)
    path = top / name
    body = wire.request({"CNI_COMMAND": command, "CNI_CONTAINERID": name, "CNI_IFNAME": "eth0",
                         **env}, CONF)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, body)
    os.close(fd)
    os.chmod(path, mode)
    return path


def test_kept_dels_run_oldest_first_and_are_removed(tmp_path: Path) -> None:
    sock = str(tmp_path / "cni2cnm.sock")
    top = Path(pending.directory(sock))
    keep(top, "del-2-1")
    keep(top, "del-1-1", CNI2CNM_DAEMON_SOCKET="/elsewhere")
    (top / ".tmp-3-1").write_bytes(b"half written")
    handler = Handler()
    assert pending.replay(sock, handler) == {"done": 2, "failed": 0, "refused": 0}
    assert [env["CNI_CONTAINERID"] for env, _ in handler.calls] == ["del-1-1", "del-2-1"]
    assert all(data == CONF for _, data in handler.calls)
    assert wire.SOCKET_ENV not in handler.calls[0][0]  # the executable's own, not forwarded
    assert sorted(p.name for p in top.iterdir()) == [".tmp-3-1"]


def test_a_failed_del_stays_for_the_next_start(tmp_path: Path) -> None:
    sock = str(tmp_path / "cni2cnm.sock")
    kept = keep(Path(pending.directory(sock)), "del-1-1")
    assert pending.replay(sock, Handler(status=1)) == {"done": 0, "failed": 1, "refused": 0}
    assert kept.exists()
    assert pending.replay(sock, Handler()) == {"done": 1, "failed": 0, "refused": 0}
    assert not kept.exists()


def test_only_what_the_shim_could_have_written_runs(tmp_path: Path) -> None:
    sock = str(tmp_path / "cni2cnm.sock")
    top = Path(pending.directory(sock))
    keep(top, "del-1-add", command="ADD")
    keep(top, "del-2-readable", mode=0o644)
    (top / "del-3-garbage").write_bytes(b"\xff" * 10)
    (top / "del-3-garbage").chmod(0o600)
    target = keep(tmp_path, "elsewhere")
    (top / "del-4-link").symlink_to(target)
    os.link(keep(tmp_path / "x", "del-0"), top / "del-5-hardlink")
    big = top / "del-6-big"
    big.write_bytes(b"\0" * (pending.MAX_FILE + 1))
    big.chmod(0o600)
    handler = Handler()
    assert pending.replay(sock, handler) == {"done": 0, "failed": 0, "refused": 6}
    assert handler.calls == []
    assert list(top.iterdir()) == [] and target.exists()


def test_a_directory_others_can_enter_is_not_read(tmp_path: Path) -> None:
    sock = str(tmp_path / "cni2cnm.sock")
    top = Path(pending.directory(sock))
    kept = keep(top, "del-1-1")
    top.chmod(0o755)
    handler = Handler()
    assert pending.replay(sock, handler) == {"done": 0, "failed": 0, "refused": 0}
    assert handler.calls == [] and kept.exists()
    assert pending.replay(str(tmp_path / "none" / "s.sock"), handler)["done"] == 0
