"""Trust only root's code: what the plugin file runs must be changeable by root alone.

The plugin runs as root for every pod. Whoever can write the interpreter it starts, the
cni2cnm package it imports, the site-packages it adds (with their .pth files, executed at
start-up) or any directory above them can make their code run as root. So `cni2cnm install`
refuses, and `cni2cnm doctor` FAILs, unless each of these

- the interpreter (the path the plugin file names, every symbolic link on the way and the
  file they lead to),
- every entry of the sys.path the plugin file will have, and everything in it: the
  directory the package is imported from, the standard library, every site-packages
  directory `site` adds (the base interpreter's too, for a venv made with
  --system-site-packages), their .pth files and the directories those add. It is learnt
  from the interpreter itself, as the plugin file starts it (-I -S, then `site`), without
  running any .pth file: only after the interpreter passed,

and every directory above them up to `/` is owned by root and not writable by group or
others. A world-writable sticky directory is refused too (anyone can create entries there),
with one exception: the system's temporary directories (/tmp, /var/tmp, /dev/shm) owned by
root, as directories ABOVE what is checked. Their sticky bit lets no one but root rename or
remove root's entries in them, and what lies below (a checkout or a venv made by root) must
pass the rule itself. Symbolic links are followed hop by hop: the directories holding the link and
those of its target must both pass.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field

from cni2cnm.ops import OpError
from cni2cnm.safedirs import component_problem

MAX_LINK_HOPS = 40
# Sticky, world-writable, root-owned: accepted as directories above the checked path only.
SYSTEM_TMP_DIRS = frozenset({"/tmp", "/var/tmp", "/dev/shm"})
MAX_REPORTED = 5
ROOT = frozenset({0})


@dataclass(frozen=True)
class Problem:
    path: str
    why: str

    def __str__(self) -> str:
        return f"{self.path} {self.why}"


@dataclass
class Installation:
    """The code the plugin file runs."""

    python: str
    package_dir: str  # the sys.path entry cni2cnm is imported from
    # every other sys.path entry of the plugin (stdlib, site-packages, what .pth files add):
    # walked in full
    site_dirs: list[str] = field(default_factory=list)
    unknown: str = ""  # why the interpreter could not tell its sys.path

    @property
    def package(self) -> str:
        return os.path.join(self.package_dir, "cni2cnm")


def this_installation(python: str | None = None, package_dir: str | None = None
                      ) -> Installation:
    """The installation a plugin file for `python` (default: this one) and `package_dir`
    (default: this package's; "": none, cni2cnm comes from sys.path) runs, with the
    sys.path it will have."""
    if package_dir is None:
        import cni2cnm

        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(cni2cnm.__file__)))
    inst = Installation(python=os.path.abspath(python or sys.executable),
                        package_dir=os.path.abspath(package_dir) if package_dir else "")
    if path_problems(inst.python):
        return inst  # never run an interpreter others could have changed
    try:
        entries = plugin_sys_path(inst.python)
    except OpError as e:
        inst.unknown = str(e)
        return inst
    inst.site_dirs = [d for d in entries if d != inst.package_dir]
    return inst


# Run by the plugin's interpreter with -I -S, as the plugin file starts it: the sys.path it
# has then, and the site-packages directories `site` would add (site.venv reads pyvenv.cfg,
# and with include-system-site-packages the base interpreter's are added too). No .pth file
# is processed here: pth_dirs reads them without running their `import` lines.
_PROBE = """
import json, site, sys
site.addsitepackages = lambda known_paths, prefixes=None: known_paths
site.venv(set())
print(json.dumps({"path": sys.path, "site": site.getsitepackages()}))
"""


def plugin_sys_path(python: str) -> list[str]:
    """Every sys.path entry the plugin file will have once `site` ran (cni2cnm.entry runs
    it): the interpreter's own, its site-packages directories and what their .pth files
    add. OpError when the interpreter cannot tell."""
    import json
    import subprocess

    try:
        proc = subprocess.run([python, "-I", "-S", "-c", _PROBE], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
                              check=False)
        doc = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        raise OpError(f"cannot run {python} to learn its sys.path: {e}") from None
    if not isinstance(doc, dict):
        raise OpError(f"cannot run {python} to learn its sys.path: exit "
                      f"{proc.returncode}: {proc.stderr.strip()[-300:]}")
    path = [os.path.abspath(p) for p in doc.get("path", []) if isinstance(p, str) and p]
    site = [os.path.abspath(p) for p in doc.get("site", []) if isinstance(p, str) and p
            and os.path.isdir(p)]
    return list(dict.fromkeys(path + [e for d in site for e in (d, *pth_dirs(d))]))


def pth_dirs(site_dir: str) -> list[str]:
    """The directories the .pth files of a site-packages directory add to sys.path (their
    `import` lines run code that lives in site-packages, which is checked in full)."""
    found: list[str] = []
    try:
        names = sorted(n for n in os.listdir(site_dir) if n.endswith(".pth"))
    except OSError:
        return found
    for name in names:
        try:
            with open(os.path.join(site_dir, name), encoding="utf-8") as f:
                lines = f.read(1 << 20).splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")):
                found.append(os.path.normpath(os.path.join(site_dir, line)))
    return [d for d in dict.fromkeys(found) if os.path.isdir(d)]


def entry_problem(path: str, st: os.stat_result) -> Problem | None:
    """One file or directory (not a link): owned by root, not writable by group/others."""
    why = component_problem(st, ROOT, sticky_ok=False)
    return Problem(path, why) if why is not None else None


def _lstat(path: str, problems: list[Problem]) -> os.stat_result | None:
    """lstat, or None with the reason added to `problems`."""
    try:
        return os.lstat(path)
    except OSError as e:
        problems.append(Problem(path, f"cannot be checked ({e.strerror})"))
        return None


def path_problems(path: str) -> list[Problem]:
    """`path` and every directory above it; symbolic links (of the path or of a directory
    on the way) are followed hop by hop, and their targets checked the same way."""
    problems: list[Problem] = []
    _check_path(os.path.abspath(path), problems, set(), 0)
    return _unique(problems)


def _check_path(path: str, problems: list[Problem], seen: set[str], hops: int) -> None:
    if path in seen:
        return
    seen.add(path)
    prefix = "/"
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts) + 1):
        if i:
            prefix = os.path.join(prefix, parts[i - 1])
        st = _lstat(prefix, problems)
        if st is None:
            return
        if stat.S_ISLNK(st.st_mode):
            # The link's own directory is checked (it is above); the link itself cannot be
            # changed, only replaced by whoever can write that directory. Its target can be
            # anything: check it as a path of its own.
            if hops >= MAX_LINK_HOPS:
                problems.append(Problem(prefix, "has too many levels of symbolic links"))
                return
            target = os.path.join(os.path.dirname(prefix), os.readlink(prefix))
            rest = os.path.join(os.path.normpath(target), *parts[i:])
            _check_path(os.path.normpath(rest), problems, seen, hops + 1)
            return
        if i < len(parts) and _sticky_system_tmp(prefix, st):
            continue  # root's entries below it cannot be replaced by anyone else
        p = entry_problem(prefix, st)
        if p is not None:
            problems.append(p)


def _sticky_system_tmp(path: str, st: os.stat_result) -> bool:
    return (path in SYSTEM_TMP_DIRS and stat.S_ISDIR(st.st_mode) and st.st_uid == 0
            and bool(st.st_mode & stat.S_ISVTX))


def tree_problems(top: str) -> list[Problem]:
    """Every file and directory under `top` (links: their targets, as paths of their own),
    but for hidden directories right under it (`.git`, `.venv`, a checkout's `.engines`):
    `top` is a sys.path entry, and nothing in such a directory can be imported from it (a
    module's name is an identifier; a venv inside a checkout is walked as a sys.path entry
    of its own when the plugin uses it). Hidden files there are checked all the same."""
    problems: list[Problem] = []

    def unreadable(e: OSError) -> None:
        problems.append(Problem(str(e.filename), f"cannot be checked ({e.strerror})"))

    for root, dirs, files in os.walk(top, onerror=unreadable):
        if root == top:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in dirs + files:
            path = os.path.join(root, name)
            st = _lstat(path, problems)
            if st is not None and stat.S_ISLNK(st.st_mode):
                problems.extend(path_problems(path))
            elif st is not None and (p := entry_problem(path, st)) is not None:
                problems.append(p)
    return _unique(problems)


def problems_of(inst: Installation) -> list[Problem]:
    """Everything wrong with the installation, in a stable order, without duplicates."""
    problems = path_problems(inst.python)
    if inst.unknown:
        problems.append(Problem(inst.python, f"cannot tell the plugin's sys.path "
                                f"({inst.unknown})"))
    walked: list[str] = []
    for d in [inst.package_dir, *inst.site_dirs]:
        if not os.path.lexists(d) or any(_below(d, top) for top in walked):
            continue
        problems += path_problems(d) + tree_problems(d)
        walked.append(d)
    return _unique(problems)


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def describe(problems: list[Problem]) -> str:
    shown = "; ".join(str(p) for p in problems[:MAX_REPORTED])
    more = len(problems) - MAX_REPORTED
    return shown + (f"; and {more} more" if more > 0 else "")


def fix(problems: list[Problem]) -> str:
    paths = " ".join(sorted({p.path for p in problems})[:MAX_REPORTED])
    return (f"make them root's alone (chown root:root {paths}; chmod go-w {paths}), or install "
            "cni2cnm into a root-owned location (a venv under /opt or /usr/local, not under "
            "/tmp or a user's home) and run `cni2cnm install` from there")


def require_trusted(inst: Installation | None = None) -> None:
    """Raise OpError (exit 2) unless only root can change the code the plugin file runs."""
    inst = inst or this_installation()
    problems = problems_of(inst)
    if problems:
        raise OpError(f"refusing to install: the plugin would run code that others than root "
                      f"can change, as root on every pod: {describe(problems)}. Fix: "
                      f"{fix(problems)}")


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
