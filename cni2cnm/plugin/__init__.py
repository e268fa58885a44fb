"""The translation from CNI operations to Docker calls, one job per file:

    config.py       PluginConf: the plugin's own config keys on top of the spec's
    handlers.py     DockerPlugin: ADD/DEL/CHECK/GC/STATUS, top-down
    preflight.py    what ADD refuses before changing anything
    attach.py       container mode: connect, verify, rollback; detaching a record
    attach_proxy.py proxy mode: a sandbox of our own, its interface moved into CNI_NETNS
    proxy.py        the sandbox container and the interface move
    check.py        CHECK against prevResult, the engine and the namespace
    gc.py           GC of stale records and orphan sandboxes
    unrecorded.py   DEL without a readable store
    result.py       the CNI result of an ADD
    request.py      what the runtime asks for (addresses, MAC, aliases), with precedence
    errors.py       the one boundary where lower-layer failures become CNI errors
"""

from typing import Any

__all__ = ["DockerPlugin", "engine_settings"]


def __getattr__(name: str) -> Any:
    """DockerPlugin and engine_settings, imported on first use: `cni2cnm.plugin.config`
    alone must not pull in the handlers (and with them the Docker SDK)."""
    if name in __all__:
        from cni2cnm.plugin import handlers

        return getattr(handlers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
