"""Trust only root's code (issue 12, item 2): install refuses and doctor FAILs unless only
root can change the interpreter, the package, site-packages and every directory above.

The trees are made under the checkout (root-owned, like /work here), not under /tmp: /tmp is
a sticky world-writable directory and is refused itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni2cnm.ops import OpError, trust
from cni2cnm.ops import doctor as doc
from cni2cnm.ops import install as inst

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture
def base() -> Iterator[Path]:
    """A fresh root-owned directory whose parents are root's alone."""
    d = Path(tempfile.mkdtemp(prefix=".c2ct-trust-", dir=REPO))
    try:
        assert trust.path_problems(str(d)) == [], (
            f"the checkout's directories must be root's alone for these tests: "
            f"{trust.path_problems(str(d))}")
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def fake_installation(base: Path) -> trust.Installation:
    """venv/bin/python -> ../../real/python3 (a link, as venvs make them), a package
    directory with cni2cnm/, a site-packages with a .pth file."""
    (base / "real").mkdir()
    real = base / "real" / "python3"
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    (base / "venv" / "bin").mkdir(parents=True)
    (base / "venv" / "bin" / "python").symlink_to("../../real/python3")
    site = base / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "x.pth").write_text(f"import os\n{base / 'extra'}\n")
    (base / "extra").mkdir()
    (base / "src" / "cni2cnm").mkdir(parents=True)
    (base / "src" / "cni2cnm" / "entry.py").write_text("print('hi')\n")
    return trust.Installation(python=str(base / "venv" / "bin" / "python"),
                              package_dir=str(base / "src"),
                              site_dirs=[str(site), *trust.pth_dirs(str(site))])


def paths(problems: list[trust.Problem]) -> list[str]:
    return [p.path for p in problems]


def test_a_root_owned_installation_passes(base: Path) -> None:
    assert trust.problems_of(fake_installation(base)) == []


def test_this_installation_passes() -> None:
    """The suite installs from the checkout's .venv: it must pass, or nothing else works."""
    here = trust.this_installation()
    assert here.package_dir == str(REPO)
    assert trust.problems_of(here) == []


@pytest.mark.parametrize("victim", ["venv", "venv/bin", "src", "src/cni2cnm/entry.py",
                                    "venv/lib/site-packages/x.pth", "real", "real/python3",
                                    "extra", ""])
def test_owned_by_nobody_is_refused(base: Path, victim: str) -> None:
    installation = fake_installation(base)
    target = base / victim
    os.chown(target, NOBODY, NOBODY)
    problems = trust.problems_of(installation)
    assert paths(problems) == [str(target)]
    assert f"owned by uid {NOBODY}" in problems[0].why


@pytest.mark.parametrize("victim", ["venv", "venv/lib/site-packages", "src/cni2cnm",
                                    "real/python3"])
@pytest.mark.parametrize("bits", [0o020, 0o002])
def test_group_or_other_writable_is_refused(base: Path, victim: str, bits: int) -> None:
    installation = fake_installation(base)
    target = base / victim
    target.chmod(target.stat().st_mode & 0o777 | bits)
    problems = trust.problems_of(installation)
    assert paths(problems) == [str(target)] and "writable by group or others" in problems[0].why


def test_hidden_directories_right_under_a_sys_path_entry_are_not_walked(base: Path) -> None:
    """A checkout on sys.path (an editable install) holds .git, .venv, .engines: nothing in
    them can be imported from it. Hidden files there, and hidden directories deeper down
    (inside a package), are checked all the same."""
    installation = fake_installation(base)
    src = base / "src"
    (src / ".engines" / "bin").mkdir(parents=True)
    (src / ".engines" / "bin" / "docker-init").symlink_to("/nonexistent/tini-static")
    os.chown(src / ".engines", NOBODY, NOBODY)
    assert trust.problems_of(installation) == []
    (src / ".hidden.py").write_text("")
    os.chown(src / ".hidden.py", NOBODY, NOBODY)
    (src / "cni2cnm" / ".data").mkdir()
    os.chown(src / "cni2cnm" / ".data", NOBODY, NOBODY)
    assert sorted(paths(trust.problems_of(installation))) == sorted(
        [str(src / ".hidden.py"), str(src / "cni2cnm" / ".data")])


def test_a_sticky_directory_like_tmp_is_refused(base: Path) -> None:
    installation = fake_installation(base)
    (base / "venv").chmod(0o1777)
    [problem] = trust.problems_of(installation)
    assert problem.path == str(base / "venv") and "sticky" in problem.why


def test_the_system_tmp_is_accepted_above_a_root_owned_directory_only() -> None:
    """/tmp's sticky bit: nobody but root can replace root's entries there, so a checkout or
    venv root made under /tmp passes on its own merits; /tmp itself never does."""
    mine = tempfile.mkdtemp()  # root's, 0700
    try:
        assert trust.path_problems(mine) == []
        assert any(p.path == "/tmp" for p in trust.path_problems("/tmp"))
        os.chown(mine, 65534, 65534)
        assert paths(trust.path_problems(mine)) == [mine]
    finally:
        os.rmdir(mine)


def test_a_link_is_followed_hop_by_hop(base: Path) -> None:
    installation = fake_installation(base)
    # the link's target moves to a directory nobody owns: the link itself is fine, its
    # target is not
    (base / "evil").mkdir()
    os.chown(base / "evil", NOBODY, NOBODY)
    (base / "real" / "python3").rename(base / "evil" / "python3")
    (base / "real" / "python3").symlink_to("../evil/python3")
    assert paths(trust.problems_of(installation)) == [str(base / "evil")]


def test_require_trusted_names_the_path_and_the_fix(base: Path) -> None:
    installation = fake_installation(base)
    os.chown(base / "venv", NOBODY, NOBODY)
    with pytest.raises(OpError) as info:
        trust.require_trusted(installation)
    text = str(info.value)
    assert "refusing to install" in text and str(base / "venv") in text
    assert f"chown root:root {base / 'venv'}" in text


def test_install_refuses_and_writes_nothing(base: Path) -> None:
    installation = fake_installation(base)
    os.chown(base / "src" / "cni2cnm", NOBODY, NOBODY)
    bin_dir = base / "bin"
    planned = [inst.Planned(inst.plugin_path(str(bin_dir)), inst.wrapper_text(
        installation.python, installation.package_dir), 0o755)]
    with pytest.raises(OpError, match="refusing to install"):
        inst.install(planned, str(base / "state"), False, installation=installation)
    assert not bin_dir.exists() and not (base / "state").exists()


def test_doctor_fails_with_the_fix_and_does_not_run_the_plugin(base: Path) -> None:
    fake_installation(base)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "cni2cnm"
    plugin.write_text(inst.wrapper_text(str(base / "venv" / "bin" / "python"),
                                        str(base / "src")))
    plugin.chmod(0o755)
    check = doc.check_trust(str(bin_dir))
    # its interpreter is a shell script: it cannot tell the sys.path the plugin would have
    assert check.status == doc.FAIL and "cannot tell the plugin's sys.path" in check.message
    os.chown(base / "src", NOBODY, NOBODY)
    check = doc.check_trust(str(bin_dir))
    assert check.status == doc.FAIL and str(base / "src") in check.message
    assert "chown root:root" in check.fix


def test_doctor_checks_this_installation_in_full(base: Path) -> None:
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "cni2cnm").write_text(inst.wrapper_text())
    check = doc.check_trust(str(bin_dir))
    assert check.status == doc.OK, check
    assert site_packages() in check.message


def test_doctor_checks_the_python_plugin_beside_the_shim(base: Path) -> None:
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "cni2cnm").write_bytes(inst.ELF_MAGIC + b"\0" * 60)  # the static shim
    (bin_dir / inst.SHIM_FALLBACK).write_text(inst.wrapper_text())
    check = doc.check_trust(str(bin_dir))
    assert check.status == doc.OK, check


def test_pth_dirs_are_checked(base: Path) -> None:
    installation = fake_installation(base)
    assert installation.site_dirs[1:] == [str(base / "extra")]
    (base / "extra").chmod(0o777)
    assert paths(trust.problems_of(installation)) == [str(base / "extra")]


# ---- the issue, reproduced: a venv owned by uid 65534 ------------------------------------


def site_packages() -> str:
    """This installation's site-packages (where the suite's dependencies are)."""
    return next(d for d in trust.this_installation().site_dirs if d.endswith("site-packages"))


def make_venv(base: Path) -> Path:
    """A real venv that finds this checkout and its dependencies through a .pth file."""
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=120)
    [site] = (venv / "lib").glob("python3*/site-packages")
    ours = site_packages()
    (site / "zz-cni2cnm-test.pth").write_text(f"{REPO}\n{ours}\n")
    return venv


def run_cli(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-I", "-m", "cni2cnm", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def test_a_venv_owned_by_nobody_install_refuses_doctor_fails(base: Path) -> None:
    venv = make_venv(base)
    dirs = ["--bin-dir", str(base / "bin"), "--conf-dir", str(base / "net.d"),
            "--state-dir", str(base / "state")]
    ok = run_cli(venv, "install", *dirs)
    assert ok.returncode == 0, ok.stderr
    plugin = base / "bin" / "cni2cnm"
    assert plugin.read_text().startswith(f"#!{venv}/bin/python")
    doctor = [*dirs[:4], "--docker-host", "unix:///nonexistent.sock"]
    good = run_cli(venv, "doctor", *doctor)
    trust_line = [ln for ln in good.stdout.splitlines() if ln.split()[1] == "trust"]
    assert trust_line and trust_line[0].startswith("OK"), good.stdout

    os.chown(venv, NOBODY, NOBODY)  # as in the issue: another user owns the venv
    refused = run_cli(venv, "install", *dirs, "--force")
    assert refused.returncode == 2, refused
    assert refused.stdout == ""
    assert "refusing to install" in refused.stderr and str(venv) in refused.stderr
    bad = run_cli(venv, "doctor", *doctor)
    assert bad.returncode == 1
    lines = {ln.split()[1]: ln for ln in bad.stdout.splitlines()}
    assert lines["trust"].startswith("FAIL") and str(venv) in lines["trust"]
    assert f"uid {NOBODY}" in lines["trust"] and "chown root:root" in lines["trust"]
    assert lines["version"].startswith("FAIL") and "not run" in lines["version"]


@pytest.mark.parametrize(("owner", "mode"), [(NOBODY, 0o700), (0, 0o770), (0, 0o1777)])
def test_doctor_fails_a_state_dir_the_plugin_refuses(base: Path, owner: int, mode: int) -> None:
    state = base / "state"
    state.mkdir()
    os.chown(state, owner, owner)
    state.chmod(mode)
    check = doc.check_state_dir(str(state))
    assert check.status == doc.FAIL and "code 5" in check.message
    assert check.fix == f"chown root:root {state} && chmod 700 {state}"


def test_doctor_fails_a_state_dir_through_a_link_or_below_a_writable_directory(
        base: Path) -> None:
    (base / "real").mkdir(mode=0o700)
    (base / "state").symlink_to(base / "real")
    check = doc.check_state_dir(str(base / "state"))
    assert check.status == doc.FAIL and "is a symbolic link" in check.message
    assert "code 5" in check.message and check.fix.startswith("remove the link")
    (base / "open").mkdir(mode=0o777)
    (base / "open").chmod(0o777)
    check = doc.check_state_dir(str(base / "open" / "state"))  # not made yet
    assert check.status == doc.FAIL and f"{base / 'open'} is writable" in check.message
    assert not (base / "open" / "state").exists()


# ---- issue 19, item 6: exactly the sys.path the plugin will have -------------------------


def test_a_venv_with_system_site_packages_has_the_base_checked_too(base: Path) -> None:
    """The plugin's interpreter is asked for its sys.path, as the plugin file starts it: a
    venv made with --system-site-packages also imports from the base interpreter's
    site-packages, every file of which (and the standard library's) is walked; a .pth
    file's directory is walked in full, not only checked as a directory."""
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True, capture_output=True, timeout=120)
    [site] = (venv / "lib").glob("python3*/site-packages")
    (base / "extra").mkdir()
    (base / "extra" / "evil.py").write_text("print('root')\n")
    (site / "zz-extra.pth").write_text(f"import os\n{base / 'extra'}\n")
    import sysconfig

    installation = trust.this_installation(str(venv / "bin" / "python"), str(base / "src"))
    base_site = sysconfig.get_paths(vars={"base": sys.base_prefix,
                                          "platbase": sys.base_prefix})["purelib"]
    stdlib = sysconfig.get_paths()["stdlib"]
    assert {str(site), base_site, stdlib, str(base / "extra")} <= set(installation.site_dirs)
    assert trust.problems_of(installation) == []
    (base / "extra" / "evil.py").chmod(0o666)
    assert paths(trust.problems_of(installation)) == [str(base / "extra" / "evil.py")]


def test_without_system_site_packages_the_base_is_not_on_the_path(base: Path) -> None:
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=120)
    import sysconfig

    base_site = sysconfig.get_paths(vars={"base": sys.base_prefix,
                                          "platbase": sys.base_prefix})["purelib"]
    installation = trust.this_installation(str(venv / "bin" / "python"), str(base / "src"))
    assert base_site not in installation.site_dirs
    assert any(d.startswith(str(venv)) for d in installation.site_dirs)


def test_an_interpreter_others_can_change_is_never_run(base: Path) -> None:
    installation = fake_installation(base)
    ran = base / "ran"
    real = base / "real" / "python3"
    real.write_text(f"#!/bin/sh\ntouch {ran}\n")
    real.chmod(0o777)
    checked = trust.this_installation(installation.python, installation.package_dir)
    assert not ran.exists() and checked.site_dirs == []
    assert str(real) in paths(trust.problems_of(checked))
