"""The plugin's process boundary: environment + stdin in, one JSON document out.

`dispatch` takes the environment and the streams as arguments so tests can
drive every path in-process, the way libcni's skel does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

from cni2cnm.cni import env as cnienv
from cni2cnm.cni import version as cniversion
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.cni.jsondoc import json_object, require_object

if TYPE_CHECKING:
    from cni2cnm.cni.config import NetConf
    from cni2cnm.cni.result import Result

log = logging.getLogger("cni2cnm.skel")


# The config model of a plugin: NetConf, or its subclass with the plugin's own keys. A string
# bound: this module must not import pydantic (cni.config) before a config is parsed.
ConfT = TypeVar("ConfT", bound="NetConf")


class Plugin(Protocol[ConfT]):
    """What a plugin implements; each method raises CNIError on failure. `config_model` is the
    model its config is parsed into (NetConf, or its subclass with the plugin's own keys), and
    what each method gets."""

    @property
    def config_model(self) -> type[ConfT]: ...

    def add(self, env: cnienv.CNIEnv, conf: ConfT) -> Result: ...
    def delete(self, env: cnienv.CNIEnv, conf: ConfT) -> None: ...
    def check(self, env: cnienv.CNIEnv, conf: ConfT) -> None: ...
    def gc(self, env: cnienv.CNIEnv, conf: ConfT) -> None: ...
    def status(self, env: cnienv.CNIEnv, conf: ConfT) -> None: ...


class Stdin(Protocol):
    """What dispatch reads the request from: all of it, at once."""

    def read(self) -> bytes: ...


def dispatch(
    load_plugin: Callable[[], Plugin[ConfT]],
    environ: Mapping[str, str],
    stdin: Stdin,
    stdout: IO[str],
    on_config: Callable[[ConfT], None] | None = None,
) -> int:
    """Run one CNI operation. Returns the process exit status (0 or 1).

    `on_config` sees the parsed config before the plugin runs: the caller sets up its logging
    there (a process logs to its stderr or the config's logFile; the daemon routes each
    request's lines to that request)."""
    version_for_errors = cniversion.LATEST
    try:
        try:
            data = stdin.read()
        except (OSError, ValueError) as e:
            raise CNIError(Code.IO_FAILURE, "cannot read stdin", str(e)) from None
        doc, undecodable = json_object(data)  # the one decoding of stdin
        peek = doc.get("cniVersion") if doc is not None else None
        if peek in cniversion.SUPPORTED_VERSIONS:
            version_for_errors = peek
        env = cnienv.parse_env(environ)
        if env.command == "VERSION":
            _emit(stdout, _version_info(data, doc, undecodable))
            return 0
        conf_doc = require_object(doc, undecodable, "network config")
        return _run(load_plugin, env, conf_doc, stdout, on_config)
    except CNIError as e:
        log.warning("%s failed: %s (code %d)", environ.get("CNI_COMMAND", "?"), e, e.code)
        _emit_error(stdout, e, environ, version_for_errors)
        return 1
    except Exception as e:  # the boundary: anything unexpected becomes 999
        log.exception("unexpected error")
        err = CNIError(Code.INTERNAL, "internal error", f"{type(e).__name__}: {e}".splitlines()[0])
        _emit_error(stdout, err, environ, version_for_errors)
        return 1


def _emit_error(stdout: IO[str], e: CNIError, environ: Mapping[str, str], version: str) -> None:
    if environ.get("CNI_COMMAND") == "DEL":
        e = e.for_del()  # runtimes take some phrases for "already gone" and never retry
    _emit(stdout, e.to_dict(version))


def _run(load_plugin: Callable[[], Plugin[ConfT]], env: cnienv.CNIEnv, doc: dict[str, Any],
         stdout: IO[str], on_config: Callable[[ConfT], None] | None) -> int:
    from cni2cnm.cni.config import check_version_field, validate_netconf

    check_version_field(doc)
    plugin = load_plugin()
    conf = validate_netconf(doc, plugin.config_model)
    if on_config is not None:
        on_config(conf)
    _require_command_version(env.command, conf.cniVersion)
    log.debug("%s container=%s ifname=%s netns=%s network=%s", env.command, env.container_id,
              env.ifname, env.netns, conf.name)
    if env.command == "ADD":
        result = plugin.add(env, conf)
        _emit(stdout, result.render(conf.cniVersion))
    elif env.command == "DEL":
        plugin.delete(env, conf)
    elif env.command == "CHECK":
        plugin.check(env, conf)
    elif env.command == "GC":
        plugin.gc(env, conf)
    elif env.command == "STATUS":
        plugin.status(env, conf)
    return 0


def _require_command_version(command: str, version: str) -> None:
    if command == "CHECK" and not cniversion.has_check(version):
        raise CNIError(Code.INCOMPATIBLE_VERSION, "config version does not allow CHECK",
                       f"CHECK needs cniVersion >= 0.4.0, config is {version}")
    if command in ("GC", "STATUS") and not cniversion.has_gc_and_status(version):
        raise CNIError(Code.INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f"{command} needs cniVersion >= 1.1.0, config is {version}")


def _version_info(data: bytes, doc: dict[str, Any] | None, undecodable: str
                  ) -> dict[str, Any]:
    """VERSION: echo the request's cniVersion, list what we support. An empty stdin asks
    nothing; anything else must be a JSON object (json_object decoded it)."""
    requested = cniversion.LATEST
    if data.strip():
        doc = require_object(doc, undecodable, "VERSION request")
        if isinstance(doc.get("cniVersion"), str):
            requested = doc["cniVersion"]
    return {"cniVersion": requested, "supportedVersions": list(cniversion.SUPPORTED_VERSIONS)}


def _emit(stdout: IO[str], doc: dict[str, Any]) -> None:
    try:
        stdout.write(json.dumps(doc) + "\n")
        stdout.flush()
    except (BrokenPipeError, OSError):
        log.warning("cannot write to stdout")
