"""The rows `cni2cnm inspect -o json` prints, as a typed model: the one source of the JSON
schema and of the drift kinds. `cni2cnm inspect --schema` prints it from the field
descriptions here (describe_rows), a unit test keeps the README's copy in step; and the
table (-o table, -o wide) made from the rows."""

from __future__ import annotations

import re
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

# The drift kinds (names for inspect.py) and DRIFT_KINDS, what each means, in their fixed order.
INCOMPLETE = "incomplete"
ENGINE_UNREACHABLE = "engine-unreachable"
NETWORK_GONE = "network-gone"
CONTAINER_GONE = "container-gone"
RECORDED_NOT_ATTACHED = "recorded-not-attached"
IPS_DIFFER = "ips-differ"
NETNS_GONE = "netns-gone"
RUNTIME_DIFFERS = "runtime-differs"
RUNTIME_ONLY = "runtime-only"

DRIFT_KINDS: dict[str, str] = {
    INCOMPLETE: "state \"adding\" (an ADD was interrupted: DEL or GC finishes it), "
                  "\"deleting\" (a DEL the engine did not answer: cni2cnm finishes it) or "
                  "\"sandbox-gone\" (a proxy sandbox ended: the pod's interface was removed; "
                  "DEL or GC finishes it)",
    ENGINE_UNREACHABLE: "the engine did not answer; only the store's view is shown",
    NETWORK_GONE: "the recorded Docker network no longer exists",
    CONTAINER_GONE: "the recorded Docker container no longer exists",
    RECORDED_NOT_ATTACHED: "container and network exist, the container has no endpoint in it",
    IPS_DIFFER: "attached, but with other addresses than recorded",
    NETNS_GONE: "the recorded namespace path is no longer that namespace (an empty "
                  "recorded netns is not drift)",
    RUNTIME_DIFFERS: "the runtime's cached result has other addresses than recorded",
    RUNTIME_ONLY: "the runtime's cache holds a cni2cnm attachment (of this state dir) that "
                    "the store does not know",
}


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _DockerObject(_Row):
    """A Docker object as ADD recorded it; `exists`: whether the engine still has it (null:
    not asked)."""

    name: str
    id: str
    exists: bool | None = None


class DockerNetworkView(_DockerObject):
    driver: str | None = None
    scope: str | None = None


class DockerContainerView(_DockerObject):
    status: str | None = Field(default=None, description="Docker's, e.g. \"running\"")


class EngineView(_Row):
    attached: bool
    endpointId: str
    mac: str
    ips: list[str]


class RuntimeView(_Row):
    cacheFile: str
    ips: list[str]
    mac: str
    netns: str


class InspectRow(_Row):
    network: str = Field(description="CNI network name (the config's \"name\"); part of the key")
    containerId: str = Field(description="CNI_CONTAINERID; part of the key")
    ifname: str = Field(description="CNI_IFNAME; part of the key")
    state: str | None = Field(description="\"attached\", \"adding\" (an ADD in progress or "
                                          "interrupted), \"deleting\" (a DEL pending until the "
                                          "engine answers), \"sandbox-gone\" (its proxy "
                                          "sandbox ended), null for a runtime-only row")
    mode: str | None = Field(description="how the plugin attached it: \"container\" or "
                                         "\"proxy\"; null for a runtime-only row")
    dockerNetwork: DockerNetworkView = Field(description="the Docker network")
    dockerContainer: DockerContainerView = Field(
        description="the Docker container (the proxy sandbox in proxy mode)")
    netns: str = Field(description="CNI_NETNS as ADD recorded it (\"\" when none)")
    netnsExists: bool | None = Field(
        description="the recorded namespace is still there (null: none recorded)")
    interface: str = Field(description="interface name inside the namespace, as ADD recorded it")
    mac: str = Field(description="MAC address, as ADD recorded it")
    ips: list[str] = Field(description="addresses (CIDR), as ADD recorded and returned them")
    endpointId: str = Field(description="Docker endpoint ID, as ADD recorded it")
    engine: EngineView | None = Field(
        description="the engine's view now; null when the engine was not asked (unreachable) "
                    "or the container is gone")
    runtime: RuntimeView | None = Field(
        description="the runtime's cached result; null: no cache")
    created: str | None = Field(description="RFC 3339 UTC time of the ADD")
    updated: str | None = Field(description="RFC 3339 UTC time of the last change of the record")
    ageSeconds: int | None = Field(description="seconds since `created`")
    drift: list[str] = Field(description="zero or more drift kinds, in their fixed order")
    error: str | None = Field(description="why this row could not be fully checked")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def type_name(annotation: Any) -> str:
    """`str|null`, `[str]`, `object`, ... as the documentation writes JSON types."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return "|".join(type_name(a) for a in get_args(annotation))
    if origin is list:
        return f"[{type_name(get_args(annotation)[0])}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        keys = ", ".join(annotation.model_fields)
        return f"object {{{keys}}}"
    return {str: "str", bool: "bool", int: "int"}.get(annotation, str(annotation))


def describe_rows() -> str:
    """The JSON schema of a row, one key a line: `key  type  description`."""
    lines = []
    for key, f in InspectRow.model_fields.items():
        lines.append(f"    {key:<16} {type_name(f.annotation)}: {f.description}")
    lines.append("")
    lines.append("Drift kinds:")
    lines.extend(f"    {kind:<22} {text}" for kind, text in DRIFT_KINDS.items())
    return "\n".join(lines)


# ==== the table ==============================================================================

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def short_id(value: str) -> str:
    return value[:12] if _HEX64.match(value) else value


def age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _network_cell(net: dict[str, Any]) -> str:
    if not net["name"]:
        return "-"
    kind = "/".join(x for x in (net.get("driver"), net.get("scope")) if x)
    return f"{net['name']} ({kind})" if kind else net["name"]


def table_rows(rows: list[dict[str, Any]], wide: bool) -> tuple[list[str], list[list[str]]]:
    """Headers and cells (plain text) of the table or wide table."""
    headers = ["CONTAINER", "IFNAME", "NETWORK", "DOCKER", "STATE", "IPS", "MAC", "MODE", "AGE"]
    if wide:
        headers += ["DOCKER-NETWORK", "ENGINE-IPS", "RUNTIME", "NETNS", "ENDPOINT"]
    headers += ["DRIFT"]
    out = []
    for r in rows:
        dc = r["dockerContainer"]
        ident = dc["id"][:12]
        docker = f"{dc['name']} ({ident})" if dc["name"] and ident else (dc["name"] or ident)
        cells = [
            r["containerId"] if wide else short_id(r["containerId"]),
            r["ifname"],
            r["network"],
            docker or "-",
            r["state"] or "-",
            ",".join(r["ips"]) or "-",
            r["mac"] or "-",
            r["mode"] or "-",
            age(r["ageSeconds"]),
        ]
        if wide:
            eng, rt = r["engine"], r["runtime"]
            cells += [
                _network_cell(r["dockerNetwork"]),
                (",".join(eng["ips"]) or "-") if eng else "?",
                (",".join(rt["ips"]) or "-") if rt else "-",
                r["netns"] or "-",
                (r["endpointId"] or "-")[:12],
            ]
        cells.append(",".join(r["drift"]) or "-")
        out.append(cells)
    return headers, out
