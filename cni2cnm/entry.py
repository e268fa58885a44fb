"""The one executable: a CNI plugin when CNI_COMMAND is set, a click CLI otherwise."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cni2cnm.cni.skel import Plugin


def main() -> None:
    if "CNI_COMMAND" in os.environ:
        sys.exit(run_plugin())
    from cni2cnm.cli import cli

    cli()


def run_plugin() -> int:
    """Plugin mode: reads no argv; stdin in, exactly one JSON document on stdout."""
    from cni2cnm.cni import logs, skel

    logs.setup()
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by accident goes to stderr, never to the runtime
    try:
        return skel.dispatch(_load_plugin, os.environ, sys.stdin.buffer, out)
    finally:
        sys.stdout = out


def _load_plugin() -> Plugin:
    from cni2cnm.plugin import DockerPlugin

    return DockerPlugin()
