"""The runtime's result cache: libcni's files (kind cniCacheV1), which `cni2cnm inspect` reads
as the runtime's view, and the CLI's own, in the same format, which `cni2cnm add` writes (as
cnitool keeps its results), CHECK and DEL read and a successful DEL or GC removes. The one
module that knows the format: where the files are, what they hold, reading and writing them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cni2cnm import PLUGIN_TYPE
from cni2cnm.ops import OpError
from cni2cnm.ops.files import atomic_write, read_json_object
from cni2cnm.plugin.config import DEFAULT_STATE_DIR
from cni2cnm.safedirs import UnsafeDir, ensure_dir

LIBCNI_CACHE_DIRS = ("/var/lib/cni/results", "/var/lib/cni/cache/results")
CLI_RESULTS_DIR = "cli-results"
CACHE_KIND = "cniCacheV1"


def default_cache_dirs(state_dir: str) -> list[str]:
    return [*LIBCNI_CACHE_DIRS, os.path.join(state_dir, CLI_RESULTS_DIR)]


# ==== reading: what the runtime believes ===================================================


@dataclass(frozen=True)
class CacheEntry:
    """One libcni cache file (kind cniCacheV1): what the runtime believes it attached."""

    path: str
    network: str
    container_id: str
    ifname: str
    netns: str
    ips: tuple[str, ...]
    mac: str
    uses_cni2cnm: bool  # the cached config has a cni2cnm plugin entry
    state_dir: str  # that entry's stateDir ("" when it has none)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.network, self.container_id, self.ifname)


def read_runtime_cache(dirs: Iterable[str]) -> tuple[list[CacheEntry], list[str]]:
    """Every cniCacheV1 file in the directories; files of other kinds are skipped, files that
    cannot be read are reported as warnings (not errors: the cache is the runtime's)."""
    entries: list[CacheEntry] = []
    warnings: list[str] = []
    for d in dict.fromkeys(dirs):
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            continue
        except OSError as e:
            warnings.append(f"cannot list runtime cache {d}: {e.strerror}")
            continue
        for name in names:
            path = os.path.join(d, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    doc = json.loads(f.read(8 << 20))
            except (OSError, ValueError) as e:
                warnings.append(f"cannot read runtime cache file {path}: {e}")
                continue
            entry = parse_cache_entry(path, doc)
            if entry is not None:
                entries.append(entry)
    return entries, warnings


def parse_cache_entry(path: str, doc: Any) -> CacheEntry | None:
    if not isinstance(doc, dict) or doc.get("kind") != CACHE_KIND:
        return None
    network, cid, ifname = (doc.get(k) for k in ("networkName", "containerId", "ifName"))
    if not all(isinstance(v, str) and v for v in (network, cid, ifname)):
        return None
    ips, mac = result_view(doc.get("result"), str(ifname))
    uses, state_dir = _cni2cnm_entry(doc.get("config"))
    netns_path = doc.get("netns")
    return CacheEntry(path=path, network=str(network), container_id=str(cid),
                      ifname=str(ifname), netns=netns_path if isinstance(netns_path, str) else "",
                      ips=tuple(ips), mac=mac, uses_cni2cnm=uses, state_dir=state_dir)


def result_view(result: Any, ifname: str) -> tuple[list[str], str]:
    """The addresses and MAC a CNI result (any version) gives the interface `ifname`."""
    if not isinstance(result, dict):
        return [], ""
    if isinstance(result.get("ips"), list):
        ifaces = [i if isinstance(i, dict) else {} for i in result.get("interfaces") or []]
        named = [n for n, i in enumerate(ifaces) if i.get("name") == ifname]
        ours = [n for n in named if ifaces[n].get("sandbox")] or named
        mac = str(ifaces[ours[0]].get("mac") or "").lower() if ours else ""
        ips = []
        for ip in result["ips"]:
            if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
                continue
            index = ip.get("interface")
            if (index in ours) if ifaces else index is None:
                ips.append(ip["address"])
        return ips, mac
    ips = [b["ip"] for b in (result.get("ip4"), result.get("ip6"))
           if isinstance(b, dict) and isinstance(b.get("ip"), str)]
    return ips, ""


def _cni2cnm_entry(config: Any) -> tuple[bool, str]:
    """Whether the cached (base64) config uses cni2cnm, and that entry's stateDir."""
    if not isinstance(config, str):
        return False, ""
    try:
        doc = json.loads(base64.b64decode(config, validate=True))
    except (binascii.Error, ValueError):
        return False, ""
    if not isinstance(doc, dict):
        return False, ""
    plugins = doc.get("plugins")
    for p in plugins if isinstance(plugins, list) else [doc]:
        if isinstance(p, dict) and p.get("type") == PLUGIN_TYPE:
            state_dir = p.get("stateDir")
            return True, state_dir if isinstance(state_dir, str) else DEFAULT_STATE_DIR
    return False, ""


# ==== the CLI's own results =================================================================


def cli_path(state_dir: str, network: str, container_id: str, ifname: str) -> str:
    """Where the CLI keeps the result of its ADD of (network, container_id, ifname)."""
    return os.path.join(state_dir, CLI_RESULTS_DIR, f"{network}-{container_id}-{ifname}.json")


def write_cli_result(path: str, conf: dict[str, Any], container_id: str, ifname: str,
                     netns_path: str, cni_args: str, result: dict[str, Any]) -> None:
    """The entry libcni would write for this ADD (its config without runtimeConfig and
    prevResult, which are kept as capabilityArgs, and without the CLI's own "_" keys)."""
    sent = {k: v for k, v in conf.items() if k not in ("runtimeConfig", "prevResult")
            and not k.startswith("_")}
    doc = {
        "kind": CACHE_KIND,
        "containerId": container_id,
        "config": base64.b64encode(json.dumps(sent).encode()).decode(),
        "ifName": ifname,
        "networkName": conf["name"],
        "netns": netns_path,
        "cniArgs": [pair.split("=", 1) for pair in cni_args.split(";") if pair],
        "capabilityArgs": conf.get("runtimeConfig") or {},
        "result": result,
    }
    try:
        ensure_dir(os.path.dirname(path), 0o700)  # in stateDir: no link, root's alone
    except UnsafeDir as e:
        raise OpError(str(e)) from None
    atomic_write(path, json.dumps(doc, indent=2) + "\n", mode=0o600)


def cached_result(path: str) -> dict[str, Any] | None:
    """The result kept in the cache file `path`; None when there is none."""
    if not os.path.exists(path):
        return None
    doc = read_json_object(path)
    result = doc.get("result")
    return result if isinstance(result, dict) else None


def prune_cli_results(state_dir: str, network: str,
                      recorded: Iterable[tuple[str, str, str]]) -> None:
    """Drop the CLI's cached results of `network` but those of the attachments still
    `recorded` (network, container ID, ifname): GC removed the others."""
    d = os.path.join(state_dir, CLI_RESULTS_DIR)
    try:
        names = os.listdir(d)
    except OSError:
        return
    kept = {cli_path(state_dir, *key) for key in recorded}
    for name in names:
        path = os.path.join(d, name)
        if not name.startswith(f"{network}-") or path in kept:
            continue
        try:
            doc = read_json_object(path)
        except OpError:
            continue
        if doc.get("networkName") == network:
            with contextlib.suppress(OSError):
                os.unlink(path)
