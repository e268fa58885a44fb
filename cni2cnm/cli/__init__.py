"""The `cni2cnm` command line: base.py (the group, the error edge, output, shared options),
attachments.py and node.py (the commands), and `serve` from cni2cnm.daemon.command."""

from cni2cnm.cli import attachments as attachments  # registers its commands on `cli`
from cni2cnm.cli import node as node  # registers its commands on `cli`
from cni2cnm.cli.base import cli as cli
from cni2cnm.daemon.command import serve

cli.add_command(serve)
