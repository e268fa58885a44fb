"""The `cni2cnm` command line (when CNI_COMMAND is not set)."""

from __future__ import annotations

import json

import click

from cni2cnm import __version__
from cni2cnm.cni.version import SUPPORTED_VERSIONS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """cni2cnm: a CNI plugin that attaches CNI containers to Docker (CNM) networks.

    Runtimes execute this same program with CNI_COMMAND set; without it, these
    commands help operators see and drive what the plugin does.
    """


@cli.command()
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def version(output: str) -> None:
    """Print the cni2cnm version and the CNI spec versions it supports.

    Example: cni2cnm version -o json
    """
    if output == "json":
        click.echo(json.dumps({"version": __version__,
                               "cniVersions": list(SUPPORTED_VERSIONS)}))
    else:
        click.echo(f"cni2cnm {__version__}")
        click.echo(f"CNI spec versions: {', '.join(SUPPORTED_VERSIONS)}")
