"""The on-demand daemon leaves its caller's cgroups (issue 19, item 5): which hierarchies the
starter finds, and what it writes (on a directory tree standing in for /sys/fs/cgroup; the
integration test moves a real daemon)."""

from __future__ import annotations

from pathlib import Path

from cni2cnm.daemon import starter


def mounts(tmp_path: Path, *lines: str) -> str:
    f = tmp_path / "mounts"
    f.write_text("".join(line + "\n" for line in lines))
    return str(f)


def test_each_hierarchy_once_v1_and_v2(tmp_path: Path) -> None:
    table = mounts(tmp_path,
                   "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
                   "cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,relatime,pids 0 0",
                   "cgroup /elsewhere/pids cgroup rw,relatime,pids 0 0",
                   "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0",
                   "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0")
    assert [top for top, _ in starter.cgroup_hierarchies(table)] == [
        "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/unified"]


def test_the_daemon_goes_to_its_own_cgroup_in_each(tmp_path: Path) -> None:
    pids, cpuset, ro = tmp_path / "pids", tmp_path / "cpuset", tmp_path / "ro"
    for d in (pids, cpuset, ro):
        d.mkdir()
    (cpuset / "cpuset.cpus").write_text("0-1\n")
    (cpuset / "cpuset.mems").write_text("0\n")
    (cpuset / "cni2cnm").mkdir()
    (cpuset / "cni2cnm" / "cpuset.cpus").write_text("")
    (cpuset / "cni2cnm" / "cpuset.mems").write_text("")
    (ro / "cni2cnm").write_text("")  # not a directory: this one cannot be used
    table = mounts(tmp_path, f"cgroup {pids} cgroup rw,pids 0 0",
                   f"cgroup {cpuset} cgroup rw,cpuset 0 0", f"cgroup {ro} cgroup rw,memory 0 0")
    failed = starter.leave_caller_cgroups(4242, table)
    assert (pids / "cni2cnm" / "cgroup.procs").read_text() == "4242"
    assert (cpuset / "cni2cnm" / "cgroup.procs").read_text() == "4242"
    assert (cpuset / "cni2cnm" / "cpuset.cpus").read_text() == "0-1\n"
    assert failed == [f"{ro} (File exists)"]
