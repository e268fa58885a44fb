"""The translation from CNI operations to Docker calls, one job per file:

    config.py       PluginConf: the plugin's own config keys on top of the spec's
    handlers.py     DockerPlugin: ADD/DEL/CHECK/GC/STATUS, top-down
    preflight.py    what ADD refuses before changing anything, and the plan it then carries out
    context.py      ADD's frozen values: the plan, the tools, what the steps found
    add_steps.py    the steps ADD takes in both modes: intent, verify, record
    attach.py       container mode ADD: connect the container that owns CNI_NETNS
    attach_proxy.py proxy mode ADD: a sandbox of our own, its interface moved into CNI_NETNS
    detach.py       detaching, for DEL, GC, rollback, interrupted ADDs and pending DELs
    proxy.py        the sandbox container and the interface move
    check.py        CHECK against prevResult, the engine and the namespace
    gc.py           GC of stale records and orphan sandboxes
    unrecorded.py   DEL without a readable store
    result.py       the CNI result of an ADD
    request.py      what the runtime asks for (addresses, MAC, aliases), with precedence
    errors.py       the one table and boundary where lower-layer failures become CNI errors
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
