"""Start `cni2cnm serve` on demand, from the plugin executable. Standard library only.

Called when a request finds no daemon on its socket (or one of another version that it
stopped). The request itself then runs in-process: nothing here waits for the daemon.

- One starter at a time: an exclusive, non-blocking flock on LOCK_FILE in the socket's
  directory. Whoever gets it starts the daemon and hands the locked file to it; the daemon
  keeps the lock until its socket is bound (or it gives up), so plugins that come meanwhile
  find the lock taken and just run in-process.
- Fully detached: fork, setsid, fork again; stdin, stdout and stderr on /dev/null and every
  other descriptor closed, so a runtime that waits for the plugin's stdout to close is never
  held by the daemon. The intermediate child exits at once and is reaped here.
- Started as a service is, owning nothing of the request that started it: working directory
  `/`, umask 022, and out of the caller's cgroups: into a cgroup CGROUP at the top of every
  cgroup hierarchy mounted (v1: one per controller; v2: the unified one), so that stopping,
  killing or limiting the runtime that happened to start it does not stop or throttle the
  node's daemon. A hierarchy it cannot write (a container's read-only /sys/fs/cgroup) is left
  as it is; the daemon logs where it ended up. It keeps the caller's namespaces, user (root)
  and resource limits.
- The daemon runs this interpreter and this installation (the package directory the plugin
  file put first on sys.path), `-I` (isolated from the runtime's environment), with a fixed
  PATH and nothing else of the runtime's environment. It checks peers, socket and directory
  exactly as `cni2cnm serve` does, logs to SERVE_LOG in the socket's directory, and exits
  after IDLE_TIMEOUT seconds without a request.
- The daemon starts at a lower CPU priority (STARTING_NICE more than the plugin's), so that
  its start-up (imports, warm-up) does not slow down the request running in-process beside
  it; once its socket is bound it goes back to the plugin's priority (--priority).
- The socket's directory is made and checked as the daemon does it (cni2cnm.safedirs: from
  `/`, no links, fixed modes whatever the umask, every component root's); the lock file is
  opened relative to that checked directory.
"""

from __future__ import annotations

import os
import sys

LOCK_FILE = "start.lock"
SERVE_LOG = "serve.log"
IDLE_TIMEOUT = 600  # seconds: an on-demand daemon exits after 10 minutes without a request
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STARTING_NICE = 10
DAEMON_UMASK = 0o022
CGROUP = "cni2cnm"  # the daemon's cgroup, at the top of each hierarchy


def start(path: str, replacing: bool = False) -> str:
    """Start a daemon on `path` unless one is being started; say what happened. `replacing`:
    the daemon there was just told to stop (it may still answer for a moment; the new one
    waits for it to go before it binds)."""
    directory = os.path.dirname(os.path.abspath(path))
    from cni2cnm import safedirs

    try:
        dir_fd = safedirs.open_dir(directory, 0o700)
    except safedirs.UnsafeDir as e:
        return f"not starting a daemon: {e}"
    except OSError as e:
        return f"cannot create {directory} to start a daemon ({e.strerror})"
    if dir_fd is None:  # not reached: open_dir creates what is missing
        return f"cannot create {directory} to start a daemon"
    try:
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600,
                     dir_fd=dir_fd)
    except OSError as e:
        return f"cannot start a daemon in {directory} ({e.strerror})"
    finally:
        os.close(dir_fd)
    try:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "another process is starting the daemon"
        if not replacing and _answers(path):
            return "a daemon has just started"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            try:
                os.setsid()
                if os.fork() == 0:
                    _exec_daemon(path, fd, directory)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        return "started a daemon for the next requests"
    except OSError as e:
        return f"cannot start a daemon ({e.strerror or e})"
    finally:
        os.close(fd)  # the daemon holds the lock through its own descriptor


def serve_code(package_parent: str) -> str:
    """The `python -I -c` program that runs `cni2cnm serve` from the cni2cnm package in
    `package_parent` (the daemon the plugin starts, and the one systemd starts)."""
    return (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from cni2cnm.daemon.command import serve; serve(prog_name='cni2cnm serve')")


def package_parent() -> str:
    """The directory holding this installation's cni2cnm package."""
    import cni2cnm

    return os.path.dirname(cni2cnm.__path__[0])


def daemon_argv(path: str, lock_fd: int, directory: str, priority: int = 0) -> list[str]:
    code = serve_code(package_parent())
    return [sys.executable, "-I", "-c", code, "--socket", path, "--started", "on-demand",
            "--idle-timeout", str(IDLE_TIMEOUT), "--lock-fd", str(lock_fd),
            "--log-file", os.path.join(directory, SERVE_LOG), "--priority", str(priority)]


def _exec_daemon(path: str, lock_fd: int, directory: str) -> None:  # pragma: no cover
    """In the detached grandchild: the lock on fd 3, /dev/null on 0-2, nothing else open."""
    if lock_fd != 3:
        os.dup2(lock_fd, 3)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        if null != target:
            os.dup2(null, target)
    os.closerange(4, _max_fd())  # /dev/null too: it is on 0-2 now (fd 3 is taken)
    os.set_inheritable(3, True)
    import contextlib  # in the detached child: not on the plugin's path

    os.chdir("/")
    os.umask(DAEMON_UMASK)
    leave_caller_cgroups(os.getpid())
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    with contextlib.suppress(OSError):
        os.nice(STARTING_NICE)
    os.execve(sys.executable, daemon_argv(path, 3, directory, priority), {"PATH": DAEMON_PATH})


def leave_caller_cgroups(pid: int, mounts: str = "/proc/self/mounts") -> list[str]:
    """Move `pid` into CGROUP at the top of every cgroup hierarchy; the hierarchies where
    that failed, with why."""
    failed = []
    for top, options in cgroup_hierarchies(mounts):
        own = os.path.join(top, CGROUP)
        try:
            os.makedirs(own, 0o755, exist_ok=True)
            if "cpuset" in options:  # v1: a new cpuset takes no task before it has cpus, mems
                _inherit_cpuset(top, own)
            with open(os.path.join(own, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError as e:
            failed.append(f"{top} ({e.strerror})")
    return failed


def cgroup_hierarchies(mounts: str = "/proc/self/mounts") -> list[tuple[str, list[str]]]:
    """(mount point, mount options) of each cgroup (v1) and cgroup2 mount, once per
    hierarchy."""
    found: dict[tuple[str, str], tuple[str, list[str]]] = {}
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
            options = fields[3].split(",")
            kind = ",".join(sorted(o for o in options if o not in _MOUNT_FLAGS))
            found.setdefault((fields[2], kind), (fields[1].replace("\\040", " "), options))
    return list(found.values())


_MOUNT_FLAGS = frozenset({"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime",
                          "nsdelegate", "memory_recursiveprot", "clone_children"})


def _inherit_cpuset(top: str, own: str) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(own, name)) as f:
            if f.read().strip():
                continue
        with open(os.path.join(top, name)) as parent, open(os.path.join(own, name), "w") as f:
            f.write(parent.read())


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def _answers(path: str) -> bool:
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
