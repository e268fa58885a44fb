"""`cni2cnm install`: put this installation where a CNI runtime looks for it.

The plugin file is a small Python script,

    #!<this interpreter> -IS
    import posix, sys
    posix.umask(0o022)
    sys.path.insert(0, '<the directory holding this cni2cnm package>')
    from cni2cnm.entry import main
    main()

rather than a copy or link of pip's console script, because:
- it runs exactly the interpreter and package the operator ran `cni2cnm install` with,
  whichever way they were installed (venv, system pip, editable checkout), without relying
  on where pip put console scripts;
- `-I` (isolated mode) keeps the runtime's environment from choosing the code a root-run
  plugin executes: PYTHONPATH, PYTHONHOME, the user site directory and the working
  directory are ignored;
- `-S` skips `site` at start-up: a request forwarded to the daemon needs only the standard
  library, and `site` (with its .pth files) costs up to ~15 ms of every pod start.
  cni2cnm.entry adds site-packages itself when a request runs in-process;
- the same bytes come out for the same installation, so re-running is a no-op, and
  `cni2cnm doctor` can run it to check the chain end to end.

An interpreter path a `#!` line cannot carry (blanks, or too long) gets a shell wrapper
instead: `umask 022; exec '<python>' -I -m cni2cnm "$@"`.

Either way the umask is 022 before anything is imported: a runtime running plugins with
umask 000 would otherwise have Python make `__pycache__` directories world-writable in root's
package (code anyone could then replace).

It refuses (exit 2) when anyone but root can change the interpreter, the package,
site-packages or a directory above them (cni2cnm.ops.trust): the plugin runs as root.

With a static shim (`--shim PATH`, or the one the package carries in `_shim/cni2cnm-shim`,
built by scripts/shim.sh), the shim is the plugin file and the script above is placed beside
it as `cni2cnm-python` (SHIM_FALLBACK): the shim forwards to the daemon and runs that script
for everything the daemon does not answer (README.md, "The static shim").

Each file placed is recorded with its SHA-256 in `<state-dir>/install-manifest.json`;
`--uninstall` removes a file only while it still has that content, and never touches files
it did not place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

from cni2cnm import PLUGIN_TYPE
from cni2cnm.daemon.starter import package_parent
from cni2cnm.ops import OpError, trust
from cni2cnm.ops.files import atomic_write, read_text, sha256_of, sha256_text
from cni2cnm.safedirs import UnsafeDir, ensure_dir

MANIFEST = "install-manifest.json"
PLUGIN_NAME = PLUGIN_TYPE  # the executable is named after the config type
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"

INSTALLED = "installed"
UNCHANGED = "unchanged"
REPLACED = "replaced"
REMOVED = "removed"
KEPT = "kept"  # uninstall: the file changed since it was installed
ABSENT = "absent"  # uninstall: already gone


@dataclass(frozen=True)
class Action:
    path: str
    action: str
    note: str = ""

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "action": self.action, "note": self.note}


@dataclass(frozen=True)
class Planned:
    path: str
    content: str | bytes
    mode: int


SHEBANG_MAX = 200  # Linux reads 255 bytes of a #! line (127 before 5.1): stay well inside


def wrapper_text(python: str | None = None, package_dir: str | None = None) -> str:
    python = python or sys.executable
    if not python:
        raise OpError("cannot tell which Python interpreter runs cni2cnm (sys.executable is "
                      "empty)")
    python = os.path.abspath(python)  # not realpath: a venv's python finds its venv by path
    header = "# cni2cnm CNI plugin, placed by `cni2cnm install`: runs the installation below.\n"
    if len(python) > SHEBANG_MAX or any(c.isspace() for c in python):
        return (f"#!/bin/sh\n{header}umask 022\n"
                f"exec {shlex.quote(python)} -I -m cni2cnm \"$@\"\n")
    if package_dir is None:
        package_dir = package_parent()
    return (f"#!{python} -IS\n{header}"
            "# -I: the runtime's environment cannot choose the code run here; -S: site-packages\n"
            "# is added only when a request needs more than the standard library.\n"
            "import posix, sys\n"
            "# Nothing made from here on takes the runtime's umask (__pycache__ included).\n"
            "posix.umask(0o022)\n"
            f"sys.path.insert(0, {package_dir!r})\n"
            "from cni2cnm.entry import main\n"
            "main()\n")


def plugin_path(bin_dir: str) -> str:
    return os.path.join(os.path.abspath(bin_dir), PLUGIN_NAME)


# ==== the static shim =======================================================================

SHIM_FALLBACK = f"{PLUGIN_NAME}-python"  # the Python plugin file beside the shim (its name
# is compiled into shim/cni2cnm-shim.c)
PACKAGED_SHIM = os.path.join("_shim", "cni2cnm-shim")  # in the package, from scripts/shim.sh
ELF_MAGIC = b"\x7fELF"


def packaged_shim() -> str | None:
    """The shim this installation carries, if scripts/shim.sh built one into the package."""
    import cni2cnm

    path = os.path.join(cni2cnm.__path__[0], PACKAGED_SHIM)
    return path if os.path.isfile(path) else None


def read_shim(path: str) -> bytes:
    """The shim's bytes, once it is root's alone, a static executable of this version."""
    from cni2cnm import __version__
    from cni2cnm.daemon.wire import PROTOCOL

    problems = trust.path_problems(path)
    if problems:
        raise OpError(f"refusing the shim {path}: {trust.describe(problems)}. Fix: "
                      f"{trust.fix(problems)}")
    try:
        with open(path, "rb") as f:
            content = f.read(64 << 20)
    except OSError as e:
        raise OpError(f"cannot read the shim {path}: {e.strerror}") from None
    if not content.startswith(ELF_MAGIC):
        raise OpError(f"{path} is not an executable (ELF) file: build the shim with "
                      "scripts/shim.sh")
    import subprocess

    want = f"cni2cnm-shim {__version__} protocol {PROTOCOL}"
    try:
        said = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                              env={}, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        raise OpError(f"cannot run the shim {path}: {e}") from None
    if said != want:
        raise OpError(f"the shim {path} says {said!r}, this cni2cnm needs {want!r}: rebuild "
                      "it from this version's source (scripts/shim.sh)")
    return content


def plugin_files(bin_dir: str, shim: str | None, *, python: bool = True) -> list[Planned]:
    """The plugin file; with a shim, the shim there and the Python plugin beside it (not
    with python=False: a node whose only cni2cnm is a daemon elsewhere, e.g. a DaemonSet's
    pod, whose Python the node cannot run)."""
    plugin = plugin_path(bin_dir)
    if shim is None:
        if not python:
            raise OpError("--shim-only needs a shim (--shim PATH, or build one with "
                          "scripts/shim.sh)")
        return [Planned(plugin, wrapper_text(), 0o755)]
    if not python:
        return [Planned(plugin, read_shim(shim), 0o755)]
    # the Python plugin first: a shim placed before it would have nothing to fall back to
    return [Planned(os.path.join(os.path.dirname(plugin), SHIM_FALLBACK), wrapper_text(),
                    0o755),
            Planned(plugin, read_shim(shim), 0o755)]


def conflist_path(conf_dir: str, network: str) -> str:
    return os.path.join(os.path.abspath(conf_dir), f"10-cni2cnm-{network}.conflist")


# ==== the manifest =========================================================================


def _manifest_path(state_dir: str) -> str:
    return os.path.join(state_dir, MANIFEST)


def read_manifest(state_dir: str) -> dict[str, dict[str, Any]]:
    path = _manifest_path(state_dir)
    if not os.path.exists(path):
        return {}
    try:
        doc = json.loads(read_text(path))
    except ValueError as e:
        raise OpError(f"{path} is not valid JSON ({e}); remove it to start over") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        raise OpError(f"{path} has no \"files\" object; remove it to start over")
    return {p: v for p, v in files.items() if isinstance(v, dict)}


def prepare_state_dir(state_dir: str) -> None:
    """Made 0700 (parents 0755), no link on the way, only root can change it (safedirs)."""
    try:
        ensure_dir(state_dir, 0o700)
    except UnsafeDir as e:
        raise OpError(f"state directory: {e}") from None


def write_manifest(state_dir: str, files: dict[str, dict[str, Any]]) -> None:
    prepare_state_dir(state_dir)
    doc = {"version": 1, "files": dict(sorted(files.items()))}
    atomic_write(_manifest_path(state_dir), json.dumps(doc, indent=2) + "\n", mode=0o600)


# ==== install / uninstall ==================================================================


def install(planned: list[Planned], state_dir: str, force: bool,
            installation: trust.Installation | None = None) -> list[Action]:
    """Place the files. Nothing is written when one exists with other content and not
    --force, or when others than root could change the code the plugin runs (trust.py)."""
    trust.require_trusted(installation)
    prepare_state_dir(state_dir)  # before anything is placed: the manifest must be writable
    different = []
    for p in planned:
        current = sha256_of(p.path)
        if current is not None and current != sha256_text(p.content):
            different.append(p.path)
        elif current is None and os.path.lexists(p.path):
            different.append(p.path)  # a dangling link or an unreadable file
    if different and not force:
        raise OpError(f"refusing to overwrite {', '.join(different)}: it differs from what "
                      "cni2cnm would install (compare, then use --force to replace it)")
    manifest = read_manifest(state_dir)
    actions = []
    for p in planned:
        digest = sha256_text(p.content)
        if p.path not in different and sha256_of(p.path) == digest:
            with contextlib.suppress(OSError):
                if os.stat(p.path).st_mode & 0o777 != p.mode:
                    os.chmod(p.path, p.mode)
            actions.append(Action(p.path, UNCHANGED))
        else:
            if os.path.islink(p.path):
                os.unlink(p.path)  # replace the link itself, not what it points to
            atomic_write(p.path, p.content, p.mode)
            actions.append(Action(p.path, REPLACED if p.path in different else INSTALLED))
        manifest[p.path] = {"sha256": digest, "installed": int(time.time())}
    write_manifest(state_dir, manifest)
    return actions


def uninstall(state_dir: str, bin_dir: str, conf_dir: str, network: str | None) -> list[Action]:
    """Remove what install placed in these directories (only the conflist of `network` when
    given), while it still has the content install wrote."""
    manifest = read_manifest(state_dir)
    plugin = plugin_path(bin_dir)
    fallback = os.path.join(os.path.dirname(plugin), SHIM_FALLBACK)
    conf_dir = os.path.abspath(conf_dir)
    candidates = [p for p in manifest if p in (plugin, fallback) or (
        os.path.dirname(p) == conf_dir and os.path.basename(p).startswith("10-cni2cnm-")
        and (network is None or p == conflist_path(conf_dir, network)))]
    if plugin not in candidates and sha256_of(plugin) == sha256_text(wrapper_text()):
        candidates.append(plugin)  # ours by content, though the manifest was lost
        manifest[plugin] = {"sha256": sha256_text(wrapper_text())}
    actions = []
    for path in sorted(candidates):
        want = manifest[path].get("sha256")
        current = sha256_of(path)
        if current is None and not os.path.lexists(path):
            actions.append(Action(path, ABSENT, "already gone"))
            del manifest[path]
        elif current == want:
            try:
                os.unlink(path)
            except OSError as e:
                raise OpError(f"cannot remove {path}: {e.strerror}") from None
            actions.append(Action(path, REMOVED))
            del manifest[path]
        else:
            actions.append(Action(path, KEPT, "changed since cni2cnm installed it; remove it "
                                  "by hand if it is no longer needed"))
    if actions and manifest:
        write_manifest(state_dir, manifest)
    elif actions:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_manifest_path(state_dir))  # nothing of install is left, nor its record
    return actions
