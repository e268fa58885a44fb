"""Detaching, the one way for every caller: DEL, GC, the rollback of a failed ADD, an
interrupted ADD or DEL finished before a new ADD, the pending DELs and ended proxy sandboxes
pending.py finishes. Only what a record describes is ever detached."""

from __future__ import annotations

import logging

from cni2cnm import netns
from cni2cnm.cni.env import CNIEnv
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.engine import Container, EngineAPI, EngineError, NotConnected, NotFound
from cni2cnm.plugin import proxy
from cni2cnm.plugin.config import PluginConf
from cni2cnm.store import ATTACHED, DELETING, SANDBOX_GONE, Attachment, Store, StoreError

log = logging.getLogger("cni2cnm.plugin")


def detach(engine: EngineAPI, namespaces: netns.Namespaces, att: Attachment) -> None:
    """Disconnect what the record describes; success when it is already gone.

    One engine call in the common case: a disconnect by container ID. ADD refused containers
    already on the network, so an endpoint of this container there is ours, even when its
    ID changed (dockerd re-creates endpoints when it restarts a container). Only when no
    container has the recorded ID does it fall back to the recorded NAME (dockerd finds a
    removed container's leftover endpoint by name), and only when no other container now
    carries that name: a reused name is someone else's container.
    """
    if att.mode == "proxy":
        proxy.release(engine, namespaces, att)
        return
    network_ref = att.network_id or att.docker_network
    if att.docker_id and _disconnect_known(engine, att.docker_id, network_ref):
        return
    if not att.docker_name:
        return
    other = engine.container(att.docker_name)
    if other is not None and other.id != att.docker_id:
        log.warning("not detaching %s/%s by name: the name %s now belongs to another "
                    "container (%s), not the one ADD attached (%s)", att.container_id,
                    att.ifname, att.docker_name, other.short_id, att.docker_id[:12])
        return
    _disconnect_known(engine, att.docker_name, network_ref)


def _disconnect_known(engine: EngineAPI, container: str, network: str) -> bool:
    """Force-disconnect; True when done or nothing was connected, False when the engine
    knows no such container."""
    try:
        engine.disconnect(container, network, force=True)
    except NotConnected:
        return True
    except NotFound:
        return False
    return True


def detach_record(engine: EngineAPI, namespaces: netns.Namespaces, store: Store,
                  att: Attachment) -> None:
    """Detach what the record describes, then forget the record (DEL, GC, a pending DEL)."""
    detach(engine, namespaces, att)
    store.delete(*att.key)


def rollback(engine: EngineAPI, namespaces: netns.Namespaces, store: Store,
             att: Attachment) -> None:
    """Undo a failed ADD: the container ends as it started, and no record is left.

    If the engine cannot be reached to undo, the intent row stays so that the
    DEL the runtime sends next (or GC) finishes the job.
    """
    try:
        detach(engine, namespaces, att)
        c = engine.container(att.docker_id) if att.mode == "container" else None
        stale = c.endpoints.get(att.network_name) if c is not None else None
        if c is not None and stale is not None and not stale.attached:
            clear_stale_entry(engine, c, att)
            c = engine.container(att.docker_id)
        if att.none_detached and c is not None and "none" not in c.endpoints and not (
            any(ep.attached for ep in c.endpoints.values())
        ):
            engine.connect(att.docker_id, "none")
    except EngineError as e:
        log.error("rollback of %s/%s incomplete (%s); the record stays for DEL/GC",
                  att.container_id, att.ifname, e.explanation)
        return
    try:
        store.delete(*att.key)
    except StoreError as e:
        log.error("rollback: cannot drop the record of %s/%s: %s", att.container_id,
                  att.ifname, e)


def clear_stale_entry(engine: EngineAPI, c: Container, att: Attachment) -> None:
    """dockerd 20.10 keeps a network entry with an empty EndpointID after a failed connect;
    it cannot be disconnected, only overwritten by a successful connect. Connect plainly,
    then disconnect, so the container ends as it started (Docker's interface counter
    moves on: the next interface it makes is named eth<N+1>)."""
    log.warning("clearing the stale %s entry a failed connect left on %s", att.network_name,
                c.name)
    engine.connect(c.id, att.network_id)
    engine.disconnect(c.id, att.network_id, force=True)


def finish_interrupted_add(engine: EngineAPI, namespaces: netns.Namespaces, store: Store,
                           env: CNIEnv, conf: PluginConf) -> None:
    """Before an ADD: a completed attachment is refused; what an interrupted ADD or a
    pending DEL left of the same key is undone first."""
    key = (conf.name, env.container_id, env.ifname)
    existing = store.get(*key)
    if existing is not None and existing.state == ATTACHED:
        raise CNIError(Code.INTERFACE_EXISTS, "attachment already exists",
                       f"{env.container_id}/{env.ifname} is already attached to network "
                       f"{existing.network_name}; DEL it before adding it again")
    if existing is not None and existing.state in (DELETING, SANDBOX_GONE):
        log.warning("finishing the DEL of %s/%s (%s) first", *key[1:], existing.state)
        detach_record(engine, namespaces, store, existing)
    elif existing is not None:
        log.warning("finishing an interrupted ADD of %s/%s first", *key[1:])
        rollback(engine, namespaces, store, existing)  # as it was before: `none` back too
        if store.get(*key) is not None:
            raise CNIError(Code.TRY_AGAIN_LATER, "interrupted ADD not undone",
                           f"the leftovers of an interrupted ADD of {env.container_id}/"
                           f"{env.ifname} could not be removed yet; retry once dockerd answers")


def clear_ended_sandbox(namespaces: netns.Namespaces, store: Store, att: Attachment) -> None:
    """The proxy sandbox of `att` has ended and Docker freed its address: the interface ADD
    moved into the pod goes, the record becomes "sandbox-gone" (CHECK reports it, DEL and GC
    remove the rest). Called with the record's lock held."""
    proxy.remove_moved(namespaces, att)
    store.mark(att, SANDBOX_GONE)


def end_if_sandbox_ended(engine: EngineAPI, namespaces: netns.Namespaces, store: Store,
                         att: Attachment) -> bool:
    """CHECK of a proxy attachment whose sandbox no longer runs: the pod's interface is
    removed at once (Docker has freed its address) and the record marked; True then."""
    if not proxy.sandbox_ended(engine, att, set()):
        return False
    clear_ended_sandbox(namespaces, store, att)
    return True
