"""The runtime's environment does not choose the code the plugin runs as root (issue 19,
item 7): an OPENSSL_CONF naming a config that loads an OpenSSL engine (a shared object whose
constructor leaves a marker) loads nothing, in-process and in the in-process fallback after
the daemon could not be used."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from c2ctest import unavailable
from pluginrun import Plugin

pytestmark = pytest.mark.own_modes  # chooses its daemon modes itself

ENGINE_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void loaded(void) {
    FILE *f = fopen(MARKER, "a");
    if (f) { fprintf(f, "loaded as uid %d\n", (int)getuid()); fclose(f); }
}
"""


def evil_openssl_conf(directory: Path) -> tuple[Path, Path]:
    """(an OpenSSL config that loads an engine, the file that engine writes when loaded)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        unavailable("no C compiler to build the test's OpenSSL engine")
    marker, src, lib = directory / "marker", directory / "engine.c", directory / "engine.so"
    src.write_text(ENGINE_C)
    subprocess.run([gcc, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(lib), str(src)],
                   check=True, capture_output=True, timeout=120)
    conf = directory / "openssl.cnf"
    conf.write_text("openssl_conf = init\n[init]\nengines = engines\n[engines]\nc2c = c2c\n"
                    f"[c2c]\nengine_id = c2c\ndynamic_path = {lib}\ninit = 1\n")
    return conf, marker


def test_the_config_would_load_code(resources: Any) -> None:
    """The test's premise: a Python that imports ssl with this OPENSSL_CONF runs the engine."""
    conf, marker = evil_openssl_conf(resources.tmpdir())
    subprocess.run(["python3", "-I", "-c", "import ssl"], env={"OPENSSL_CONF": str(conf)},
                   check=True, timeout=60)
    assert marker.read_text().startswith("loaded")


@pytest.mark.parametrize("mode", ["in_process", "fallback"])
def test_openssl_conf_loads_no_code_in_the_plugin(plugin: Plugin, resources: Any,
                                                  mode: str) -> None:
    directory = resources.tmpdir()
    conf, marker = evil_openssl_conf(directory)
    env = {"OPENSSL_CONF": str(conf), "OPENSSL_ENGINES": str(directory),
           "OPENSSL_MODULES": str(directory)}
    if mode == "fallback":  # a daemon that should answer, does not: the request runs here
        env |= {"CNI2CNM_DAEMON": "manual", "CNI2CNM_DAEMON_SOCKET": str(directory / "d.sock"),
                "CNI2CNM_LOG_LEVEL": "info"}
    else:
        env |= {"CNI2CNM_DAEMON": "off", "CNI2CNM_DAEMON_SOCKET": ""}
    out = plugin.run("STATUS", "", "", conf=plugin.conf(cniVersion="1.1.0"), env=env)
    out.silent()  # it reached the engine: ssl was imported
    if mode == "fallback":
        assert "in-process" in out.stderr, out.stderr
    assert not marker.exists(), marker.read_text()
