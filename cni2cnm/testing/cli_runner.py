"""click's CliRunner with stdout and stderr captured apart, on every click the project allows.

click >= 8.2 always keeps them apart (and has no `mix_stderr`); click 8.1 mixes stderr into
stdout unless told not to, and then has no `Result.stderr`.
"""

from __future__ import annotations

import inspect
from typing import Any

from click.testing import CliRunner


def cli_runner() -> CliRunner:
    options: dict[str, Any] = {}
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        options["mix_stderr"] = False
    return CliRunner(**options)
