"""The `cni2cnm` command line (when CNI_COMMAND is not set).

Commands are thin: the work is in cni2cnm/ops/. This module is the edge where every
library, engine, store and CNI error becomes one line on stderr and a non-zero exit
status, never a traceback (CNI2CNM_LOG_LEVEL=debug logs the traceback of an unexpected
error).

Exit status, for every command: 0 success; 1 the command ran and found a problem (inspect:
drift; doctor: a FAIL; add/check/del/gc/status: the plugin's CNI error, printed on stdout as
the plugin prints it); 2 the command could not do its job (bad usage, engine unreachable,
unreadable file, refused overwrite, ...).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from cni2cnm.cni.errors import CNIError
from cni2cnm.engine import DEFAULT_HOST, EngineError
from cni2cnm.ops import EXIT_ERROR, OpError
from cni2cnm.plugin.config import DEFAULT_STATE_DIR
from cni2cnm.store import StoreError

log = logging.getLogger("cni2cnm.cli")

F = TypeVar("F", bound=Callable[..., Any])



# ==== the error edge ========================================================================


class Failure(click.ClickException):
    """The command could not do its job: one line on stderr, exit status EXIT_ERROR. The one
    error edge of every command, `serve` included."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    def show(self, file: Any = None) -> None:
        click.echo(f"cni2cnm: error: {self.format_message()}", err=True, color=use_color())


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OpError as e:
            raise Failure(str(e)) from None
        except CNIError as e:
            raise Failure(f"{e} (CNI error {e.code})") from None
        except EngineError as e:
            raise Failure(f"Docker engine: {e.explanation}") from None
        except StoreError as e:
            raise Failure(f"state store: {e}") from None
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # click quiets a closed pipe (`cni2cnm inspect | head`)
            raise Failure(_one_line(e)) from None
        except Exception as e:
            log.debug("unexpected error", exc_info=True)
            raise Failure(f"internal error: {type(e).__name__}: {_one_line(e)} (set "
                          "CNI2CNM_LOG_LEVEL=debug for the traceback)") from None


# ==== output ================================================================================


def use_color() -> bool | None:
    """None lets click decide (colour on a TTY only); NO_COLOR turns it off everywhere."""
    return False if os.environ.get("NO_COLOR") else None


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    click.echo(text, err=err, nl=nl, color=use_color())


STATUS_COLORS = {"OK": "green", "WARN": "yellow", "FAIL": "red"}


def print_table(headers: list[str], rows: list[list[str]],
                color_cell: Callable[[int, str], str] | None = None) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: list[str], style: Callable[[int, str], str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            padded = cell if i == last else cell.ljust(widths[i])
            parts.append(style(i, padded))
        return "  ".join(parts).rstrip()

    echo(line(headers, lambda i, s: click.style(s, bold=True)))
    for r in rows:
        echo(line(r, color_cell or (lambda i, s: s)))


def print_json(doc: Any) -> None:
    echo(json.dumps(doc, indent=2))


# ==== shared options ========================================================================


def common_options(f: F) -> F:
    """--docker-host and --state-dir, on every command that touches the engine or the store."""
    f = click.option(
        "--state-dir", default=DEFAULT_STATE_DIR, show_default=True, metavar="DIR",
        help="the plugin's state directory (its attachment store); the conflist's stateDir",
    )(f)
    f = click.option(
        "--docker-host", envvar="DOCKER_HOST", default=DEFAULT_HOST, metavar="URL",
        help=f"Docker engine address [default: $DOCKER_HOST, else {DEFAULT_HOST}]",
    )(f)
    return f


def settings(ctx: click.Context, docker_host: str, state_dir: str) -> Any:
    from cni2cnm.ops.invoke import Settings

    return Settings(
        docker_host=docker_host,
        state_dir=os.path.abspath(state_dir),
        docker_host_explicit=ctx.get_parameter_source("docker_host") == ParameterSource.COMMANDLINE,
        state_dir_explicit=ctx.get_parameter_source("state_dir") == ParameterSource.COMMANDLINE,
    )


def make_engine(docker_host: str, timeout: float = 15.0) -> Any:
    from cni2cnm.engine import Engine

    return Engine(docker_host, timeout=timeout)


def finish(code: int) -> NoReturn:
    sys.exit(code)


# ==== the group =============================================================================


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"],
                                          "max_content_width": 100})
def cli() -> None:
    """cni2cnm: a CNI plugin that attaches CNI containers to Docker (CNM) networks.

    Runtimes execute this same program with CNI_COMMAND set; without it, these
    commands help operators see and drive what the plugin does.

    \b
    Exit status: 0 success; 1 a problem found (drift, a FAIL, the plugin's
    CNI error); 2 the command could not run (usage, engine unreachable,
    unreadable files, ...).

    \b
    Example:
      cni2cnm doctor --network pods
    """
    from cni2cnm.cni import logs

    logs.setup()
