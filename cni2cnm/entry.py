"""The one executable: a CNI plugin when CNI_COMMAND is set, a click CLI otherwise.

As a plugin it forwards ADD, DEL, CHECK, GC and STATUS to a running `cni2cnm serve` when
there is one (cni2cnm.daemon.client, standard library only; in the daemon mode "auto" it
starts one for the next requests when none answers) and prints the daemon's answer verbatim;
otherwise, and for VERSION, it runs the request in this process. Both paths run
cni2cnm.cni.skel.dispatch with the same environment and stdin, so their output is the same.
"""

from __future__ import annotations

import io
import os
import sys

TYPE_CHECKING = False  # not `from typing import Any, ...`: typing costs the client path 7 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import NoReturn

    from cni2cnm.cni.skel import Plugin, Stdin
    from cni2cnm.daemon.client import Fallback, Reply
    from cni2cnm.plugin.config import PluginConf


# The environment variables through which OpenSSL loads code (a config that names engines or
# providers, and where it finds them, their files). `-I` does not cover them, and `ssl` is
# imported by the engine client (requests): a plugin drops them before anything imports it.
OPENSSL_CODE_ENV = ("OPENSSL_CONF", "OPENSSL_CONF_INCLUDE", "OPENSSL_ENGINES",
                    "OPENSSL_MODULES")


def main() -> None:
    if "CNI_COMMAND" in os.environ:
        drop_code_loading_env()
        # A plugin process lives for one request: the cyclic garbage collector would only
        # slow the imports of docker and pydantic down (~10 ms).
        import gc

        gc.disable()
        exit_now(run_plugin())
    enable_site()
    from cni2cnm.cli import cli

    cli()


def drop_code_loading_env() -> None:
    """The runtime's environment does not choose the code a plugin runs as root: forget the
    variables OpenSSL would load code through (os.environ.pop unsets them for the C library
    too), before `ssl` is imported, in-process or in a fallback after forwarding."""
    for name in OPENSSL_CODE_ENV:
        os.environ.pop(name, None)


def enable_site() -> None:
    """Add site-packages (where docker, pydantic and click live) if Python started without.

    The plugin file `cni2cnm install` places starts Python with -S, because `site` costs up
    to ~15 ms and a request forwarded to the daemon needs only the standard library; every
    path that needs more calls this first.
    """
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


def run_plugin() -> int:
    """Plugin mode: reads no argv; stdin in, exactly one JSON document on stdout."""
    stdin: Stdin = sys.stdin.buffer
    fallback: Fallback | None = None
    if os.environ.get("CNI_COMMAND", "VERSION") != "VERSION":
        from cni2cnm.daemon import client

        if client.forwarded(os.environ):
            try:
                data = stdin.read()
            except (OSError, ValueError) as e:
                stdin = _Unreadable(e)  # in-process reports it, as it always has (code 5)
            else:
                outcome = client.forward(os.environ, data)
                if isinstance(outcome, client.Reply):
                    return _print_reply(outcome)
                fallback = outcome
                stdin = io.BytesIO(data)
    return run_in_process(stdin, fallback)


def exit_now(status: int) -> NoReturn:
    """End the plugin process without finalising the interpreter.

    With docker and pydantic loaded, tearing the interpreter down costs ~20 ms of every
    request, and there is nothing left to tear down: the store and the engine client are
    closed by then; output and log handlers are flushed here.
    """
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 1
    os._exit(status)


def run_in_process(stdin: Stdin, fallback: Fallback | None = None) -> int:
    enable_site()
    import logging

    from cni2cnm.cni import logs, skel

    logs.setup()
    if fallback is not None:
        logging.getLogger("cni2cnm.entry").log(
            logging.WARNING if fallback.warn else logging.INFO, "%s", fallback.reason)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by accident goes to stderr, never to the runtime
    try:
        return skel.dispatch(lambda: load_plugin(os.environ), os.environ, stdin, out,
                             on_config=log_as_configured)
    finally:
        sys.stdout = out


def log_as_configured(conf: PluginConf) -> None:
    """This process's logging, from the config's logFile and logLevel."""
    from cni2cnm.cni import logs

    logs.setup(conf.logFile, conf.logLevel)


def load_plugin(environ: Mapping[str, str]) -> Plugin[PluginConf]:
    """The plugin for one request; the daemon builds it the same way, with the request's
    environment (the plugin reads DOCKER_HOST and its test stop point from it)."""
    from cni2cnm.plugin.handlers import DockerPlugin

    return DockerPlugin(environ=environ)


def _print_reply(reply: Reply) -> int:
    if reply.stderr:
        sys.stderr.write(reply.stderr)
        sys.stderr.flush()
    try:
        sys.stdout.write(reply.stdout)
        sys.stdout.flush()
    except OSError:
        sys.stderr.write("cni2cnm: cannot write to stdout\n")
    return reply.exit


class _Unreadable(io.RawIOBase):
    """Stands in for a stdin that failed to read, so dispatch reports the same error."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> NoReturn:
        raise self.error
