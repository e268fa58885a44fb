"""GC: forget and detach every recorded attachment of the network that the runtime no
longer lists, then remove the orphan sandboxes this store made. Keeps going past errors
and reports them together."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cni2cnm import netns
from cni2cnm.cni.errors import CNIError
from cni2cnm.engine import EngineAPI, EngineError
from cni2cnm.plugin import proxy
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.detach import detach_record
from cni2cnm.plugin.errors import explanation, gc_code
from cni2cnm.store import Attachment, Store, StoreError

log = logging.getLogger("cni2cnm.plugin")


def collect(engine_of: Callable[[str], EngineAPI], namespaces: netns.Namespaces, store: Store,
            conf: PluginConf) -> None:
    valid = conf.valid_attachment_keys() or set()
    problems: list[tuple[str, Exception]] = []
    for att in store.list(conf.name):
        engine = engine_of(att.docker_host)
        try:
            with store.lock(att.container_id):
                current = store.get(*att.key)
                if current is None:
                    continue
                if (att.container_id, att.ifname) in valid and still_there(engine, namespaces,
                                                                           current):
                    continue
                detach_record(engine, namespaces, store, current)
                log.info("GC removed %s/%s", att.container_id, att.ifname)
        except (EngineError, CNIError, StoreError, netns.NetnsError) as e:
            problems.append((f"{att.container_id}/{att.ifname}", e))
    engine = engine_of("")
    try:
        for sandbox_id, cid, ifname in proxy.labelled_sandboxes(engine, conf.name,
                                                                store.identity()):
            if (cid, ifname) in valid or store.get(conf.name, cid, ifname) is not None:
                continue
            log.info("GC removes orphan sandbox %s of %s/%s", sandbox_id[:12], cid, ifname)
            engine.remove_container(sandbox_id)
    except EngineError as e:
        problems.append(("orphan sandboxes", e))
    if problems:
        raise CNIError(gc_code(e for _, e in problems),
                       f"GC could not finish: {len(problems)} problem(s)",
                       "; ".join(f"{what}: {explanation(e)}" for what, e in problems))


def still_there(engine: EngineAPI, namespaces: netns.Namespaces, att: Attachment) -> bool:
    """Whether what the attachment serves still exists (GC keeps it only then)."""
    if att.mode == "proxy":
        return namespaces.is_namespace(att.netns) and engine.container(att.sandbox_id) is not None
    return engine.container(att.docker_id) is not None
