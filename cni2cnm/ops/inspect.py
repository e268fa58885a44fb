"""`cni2cnm inspect`: what the store recorded, what the engine has, what the runtime believes.

Every recorded attachment (one row of the store) is joined with the engine's live state
(the Docker container, the network, the container's endpoint in it), with the network
namespace, and with the runtime's result cache when one exists (resultcache.py: libcni's
`/var/lib/cni/results`, `/var/lib/cni/cache/results`, and the CLI's own
`<state-dir>/cli-results`). Each row lists its drift: every way in which they disagree.

JSON output (`-o json`): a list of objects, one per attachment, in the order they were
recorded, then one per runtime-only cache entry; every key always present. The schema is
the model `inspect_rows.InspectRow` (`describe_rows()` prints it; the README lists it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cni2cnm import netns
from cni2cnm.engine import Container, Engine, EngineError, EngineUnavailable, Network
from cni2cnm.ops import EXIT_ERROR, EXIT_FOUND, EXIT_OK, netns_container_id
from cni2cnm.ops.inspect_rows import (
    CONTAINER_GONE,
    DRIFT_KINDS,
    ENGINE_UNREACHABLE,
    INCOMPLETE,
    IPS_DIFFER,
    NETNS_GONE,
    NETWORK_GONE,
    RECORDED_NOT_ATTACHED,
    RUNTIME_DIFFERS,
    RUNTIME_ONLY,
    DockerContainerView,
    DockerNetworkView,
    EngineView,
    InspectRow,
    RuntimeView,
)
from cni2cnm.ops.resultcache import CacheEntry, read_runtime_cache
from cni2cnm.store import ATTACHED, Attachment, Store

log = logging.getLogger("cni2cnm.cli")


# ==== the engine, asked once per object ===================================================


class _Live:
    """The engine's answers, memoised; `down` says why it stopped answering."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine
        self.down: str | None = None if engine is not None else "no engine"
        self._networks: dict[str, Network | None] = {}
        self._containers: dict[str, Container | None] = {}

    def probe(self) -> None:
        if self.engine is None:
            return
        try:
            self.engine.api_version()
        except EngineUnavailable as e:
            self.down = e.explanation

    def network(self, ref: str) -> Network | None:
        if ref not in self._networks:
            self._networks[ref] = self._ask(lambda e: e.network(ref))
        return self._networks[ref]

    def container(self, ref: str) -> Container | None:
        if ref not in self._containers:
            self._containers[ref] = self._ask(lambda e: e.container(ref))
        return self._containers[ref]

    def _ask(self, call: Callable[[Engine], Any]) -> Any:
        assert self.engine is not None
        try:
            return call(self.engine)
        except EngineUnavailable as e:
            self.down = e.explanation
            raise


# ==== rows ===================================================================================


@dataclass
class Report:
    rows: list[dict[str, Any]] = field(default_factory=list)
    engine_down: str | None = None  # why the engine could not be asked
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.engine_down or any(r["error"] for r in self.rows):
            return EXIT_ERROR
        if any(r["drift"] for r in self.rows):
            return EXIT_FOUND
        return EXIT_OK


def read_records(state_dir: str) -> list[Attachment]:
    """The store's rows, without creating a store where there is none.

    A missing database next to the store's marker is the store's "lost" condition: opening
    it reports that (StoreError) instead of pretending nothing is recorded."""
    store = Store(state_dir)
    marker = getattr(store, "marker", "")
    if not os.path.exists(store.path) and not (marker and os.path.exists(marker)):
        return []
    with store:
        return store.list()


def inspect(
    state_dir: str,
    engine: Engine | None,
    cache_dirs: Iterable[str],
    network: str | None = None,
    target: str | None = None,
    now: float | None = None,
) -> Report:
    """Build the report. `engine` None means: do not ask an engine (engine-unreachable)."""
    now = time.time() if now is None else now
    records = read_records(state_dir)
    cache, warnings = read_runtime_cache(cache_dirs)
    live = _Live(engine)
    live.probe()
    report = Report(warnings=warnings)

    resolved_id = None
    if target and "/" not in target and live.down is None:
        with contextlib.suppress(EngineError):
            c = live.container(target)
            resolved_id = c.id if c is not None else None

    by_key = {e.key: e for e in cache}
    for att in records:
        if network and network not in (att.network, att.network_name, att.docker_network):
            continue
        if target and not _matches(att, target, resolved_id):
            continue
        report.rows.append(_row(att, live, by_key.get(att.key), now))

    keys = {att.key for att in records}
    for entry in cache:
        if entry.key in keys or not entry.uses_cni2cnm:
            continue
        if os.path.normpath(entry.state_dir) != os.path.normpath(state_dir):
            continue
        if network and entry.network != network:
            continue
        if target and not _matches_id(entry.container_id, entry.ifname, target, entry.netns):
            continue
        keys.add(entry.key)
        report.rows.append(_runtime_only_row(entry))
    report.engine_down = live.down
    return report


def _matches_id(container_id: str, ifname: str, target: str, netns_path: str = "") -> bool:
    if target.startswith("/"):  # a namespace path, as `cni2cnm add PATH` takes it
        path = os.path.abspath(target)
        if netns_path and netns_path in (target, path):
            return True
        return container_id == netns_container_id(path)
    cid, sep, want_if = target.partition("/")
    if sep:
        return bool(cid) and container_id.startswith(cid) and ifname == want_if
    return container_id.startswith(target)


def _matches(att: Attachment, target: str, resolved_id: str | None) -> bool:
    if _matches_id(att.container_id, att.ifname, target, att.netns):
        return True
    if "/" in target:
        return False
    return bool(
        att.docker_name == target
        or (att.docker_id and att.docker_id.startswith(target))
        or (resolved_id and att.docker_id == resolved_id)
    )


def _iso(ts: float) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _netns_exists(att: Attachment) -> bool | None:
    if not att.netns:
        return None
    if not netns.is_namespace(att.netns):
        return False
    if att.netns_ino:
        # The path may now name another namespace (a restarted container's old /proc/PID).
        return netns.identity(att.netns) == (att.netns_dev, att.netns_ino)
    return True


def _row(att: Attachment, live: _Live, entry: CacheEntry | None, now: float) -> dict[str, Any]:
    drift: set[str] = set()
    error = None
    net_exists: bool | None = None
    net_driver: str | None = None
    net_scope: str | None = None
    c_exists: bool | None = None
    c_status = None
    c_name = att.docker_name
    engine_view = None
    if att.state != ATTACHED:  # adding, deleting, sandbox-gone
        drift.add(INCOMPLETE)
    if live.down is None:
        try:
            net = live.network(att.network_id or att.docker_network)
            net_exists = net is not None
            if net is None:
                drift.add(NETWORK_GONE)
            else:
                net_driver, net_scope = net.driver, net.scope
            c = live.container(att.docker_id) if att.docker_id else None
            if att.docker_id:
                c_exists = c is not None
                if c is None:
                    drift.add(CONTAINER_GONE)
            if c is not None:
                c_status, c_name = c.status, c.name
                ep = (c.endpoint_in(att.network_id) if att.network_id
                      else c.endpoints.get(att.network_name or att.docker_network))
                attached = ep is not None and ep.attached
                engine_view = EngineView(
                    attached=attached, endpointId=ep.endpoint_id if ep is not None else "",
                    mac=ep.mac if ep is not None else "",
                    ips=ep.addresses if ep is not None else [])
                if att.state == ATTACHED and net_exists and not attached:
                    drift.add(RECORDED_NOT_ATTACHED)
                if (att.state == ATTACHED and attached and ep is not None
                        and sorted(ep.addresses) != sorted(att.ips)):
                    drift.add(IPS_DIFFER)
        except EngineUnavailable:
            pass  # live.down is set: reported below like an engine that never answered
        except EngineError as e:
            error = e.explanation
    if live.down is not None:
        drift.add(ENGINE_UNREACHABLE)
    ns_exists = _netns_exists(att)
    if ns_exists is False:
        drift.add(NETNS_GONE)
    runtime = None
    if entry is not None:
        runtime = RuntimeView(cacheFile=entry.path, ips=list(entry.ips), mac=entry.mac,
                              netns=entry.netns)
        if att.state == ATTACHED and sorted(entry.ips) != sorted(att.ips):
            drift.add(RUNTIME_DIFFERS)
    return InspectRow(
        network=att.network, containerId=att.container_id, ifname=att.ifname,
        state=att.state, mode=att.mode,
        dockerNetwork=DockerNetworkView(name=att.network_name or att.docker_network,
                                        id=att.network_id, exists=net_exists,
                                        driver=net_driver, scope=net_scope),
        dockerContainer=DockerContainerView(name=c_name, id=att.docker_id, exists=c_exists,
                                            status=c_status),
        netns=att.netns, netnsExists=ns_exists, interface=att.interface, mac=att.mac,
        ips=list(att.ips), endpointId=att.endpoint_id, engine=engine_view, runtime=runtime,
        created=_iso(att.created), updated=_iso(att.updated),
        ageSeconds=max(0, int(now - att.created)) if att.created else None,
        drift=[d for d in DRIFT_KINDS if d in drift], error=error,
    ).to_json()


def _runtime_only_row(entry: CacheEntry) -> dict[str, Any]:
    return InspectRow(
        network=entry.network, containerId=entry.container_id, ifname=entry.ifname,
        state=None, mode=None, dockerNetwork=DockerNetworkView(name="", id=""),
        dockerContainer=DockerContainerView(name="", id=""), netns=entry.netns,
        netnsExists=None, interface="", mac="", ips=[], endpointId="", engine=None,
        runtime=RuntimeView(cacheFile=entry.path, ips=list(entry.ips), mac=entry.mac,
                            netns=entry.netns),
        created=None, updated=None, ageSeconds=None, drift=[RUNTIME_ONLY], error=None,
    ).to_json()
