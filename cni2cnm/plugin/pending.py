"""What cni2cnm finishes without being asked again: the runtime may never send it.

- Pending DELs: a DEL that found its record but could not reach the engine marks the record
  "deleting" (code 11 for the runtime). Runtimes do not all send that DEL again (the dockershim
  and cri-dockerd take some errors for "already gone"), so the next pass that reaches the
  engine detaches it exactly as DEL does (detach.detach_record: only what the record
  describes).
- Ended proxy sandboxes: when a proxy sandbox stops (`docker stop`, dockerd restarted without
  live-restore), Docker frees its address, but the interface ADD moved into the pod still
  carries it. The pass deletes that interface (identified by the recorded name, MAC and
  namespace, nothing else) and marks the record "sandbox-gone"; CHECK reports it, DEL and GC
  remove the rest.

`reconcile` is the pass: the daemon's keeper runs it every second for each stateDir it has
served, and every in-process plugin run (ADD, DEL, CHECK, GC) runs it first. Without work it
is one indexed query; it takes only locks that are free at once (a record another operation
holds is that operation's business) and gives up on an engine that does not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cni2cnm import netns
from cni2cnm.engine import EngineAPI, EngineError, EngineUnavailable
from cni2cnm.plugin import proxy
from cni2cnm.plugin.detach import clear_ended_sandbox, detach_record
from cni2cnm.store import ATTACHED, DELETING, Attachment, Store, StoreError

log = logging.getLogger("cni2cnm.plugin")

PER_PASS = 16  # pending DELs finished per pass at most (a plugin run stays short)

EngineOf = Callable[[str], EngineAPI]


def reconcile(engine_of: EngineOf, namespaces: netns.Namespaces, store: Store,
              limit: int = PER_PASS) -> int:
    """Finish pending DELs and clear the interfaces of ended proxy sandboxes. Returns how
    many records still need it (0: nothing left to watch for now)."""
    down: set[str] = set()
    left = finish_pending(engine_of, namespaces, store, down, limit)
    return left + clear_ended_sandboxes(engine_of, namespaces, store, down)


def finish_pending(engine_of: EngineOf, namespaces: netns.Namespaces, store: Store,
                   down: set[str], limit: int = PER_PASS) -> int:
    """Detach and forget the records of DELs that could not finish; the number left."""
    pending = store.in_state(DELETING, limit=limit)
    left = 0
    for att in pending:
        if att.docker_host in down or not _finish_one(engine_of, namespaces, store, att, down):
            left += 1
    return left


def _finish_one(engine_of: EngineOf, namespaces: netns.Namespaces, store: Store,
                att: Attachment, down: set[str]) -> bool:
    def finish(current: Attachment) -> None:
        detach_record(engine_of(current.docker_host), namespaces, store, current)
        log.warning("finished the pending DEL of %s/%s (network %s)", current.container_id,
                    current.ifname, current.network)

    return _locked(store, att, DELETING, finish, down)


def clear_ended_sandboxes(engine_of: EngineOf, namespaces: netns.Namespaces, store: Store,
                          down: set[str]) -> int:
    """Remove the pod interface of every attached proxy record whose sandbox has ended."""
    proxies = store.in_state(ATTACHED, mode="proxy")
    left = 0
    running: dict[str, set[str]] = {}
    for att in proxies:
        host = att.docker_host
        if host in down:
            left += 1
            continue
        try:
            if host not in running:
                running[host] = proxy.running_sandboxes(engine_of(host))
            if not proxy.sandbox_ended(engine_of(host), att, running[host]):
                continue
            log.info("the proxy sandbox %s of %s/%s has ended", att.sandbox_name,
                     att.container_id, att.ifname)
        except EngineError as e:
            _note_down(host, e, down)
            left += 1
            continue

        if not _locked(store, att, ATTACHED,
                       lambda current: clear_ended_sandbox(namespaces, store, current), down):
            left += 1
    return left


def _locked(store: Store, att: Attachment, state: str, work: Callable[[Attachment], None],
            down: set[str]) -> bool:
    """Run `work` on the record if its lock is free now and it is still in `state`. True
    when done (or nothing is left to do), False when it must be tried again."""
    try:
        with store.lock(att.container_id, timeout=0):
            current = store.get(*att.key)
            if current is None or current.state != state:
                return True
            work(current)
            return True
    except EngineError as e:
        _note_down(att.docker_host, e, down)
    except StoreError as e:
        if not e.busy:
            log.error("cannot finish %s/%s: %s", att.container_id, att.ifname, e)
    except netns.NetnsError as e:
        log.error("cannot finish %s/%s: %s", att.container_id, att.ifname, e)
    return False


def _note_down(host: str, e: EngineError, down: set[str]) -> None:
    if isinstance(e, EngineUnavailable):
        down.add(host)  # not asked again in this pass
        log.info("engine %s does not answer (%s); pending work waits for it", host or "-",
                 e.explanation)
    else:
        log.error("engine %s refused: %s", host or "-", e.explanation)
