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
