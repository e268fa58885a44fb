"""Network configuration models (pydantic v2): the keys of SPEC.md and CONVENTIONS.md only.

A plugin subclasses NetConf with its own keys (cni2cnm.plugin.config.PluginConf) and hands
the subclass to the dispatcher. Anything not typed is kept (extra="allow") and ignored, as
the spec asks plugins to tolerate fields they do not know. Booleans and numbers are strict,
as libcni's JSON decoding is: "true" or "45" in quotes are errors, not coerced.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from cni2cnm.cni import version as cniversion
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.cni.names import name_problem

# A config key is read by its JSON name only: a field's alias when it has one (NetConf's
# "cni.dev/..." keys), else its Python name, which is then the same text. Never by the Python
# name of an aliased field: "attachments" is an unknown key, kept and ignored, not
# "cni.dev/attachments". pydantic's defaults for this moved (2.11 added validate_by_alias and
# validate_by_name; populate_by_name=True on a base class leaks validate_by_name=True into its
# subclasses on 2.11-2.13), so every model states all three, the same on every pydantic 2.x.
BY_KEY_ONLY = ConfigDict(validate_by_alias=True, validate_by_name=False, populate_by_name=False)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", **BY_KEY_ONLY)


class DNS(_Model):
    nameservers: list[str] | None = None
    domain: str | None = None
    search: list[str] | None = None
    options: list[str] | None = None


class RuntimeDNS(_Model):
    servers: list[str] | None = None
    searches: list[str] | None = None
    options: list[str] | None = None


class PortMapping(_Model):
    hostPort: StrictInt
    containerPort: StrictInt
    protocol: str = "tcp"
    hostIP: str | None = None


class RuntimeConfig(_Model):
    ips: list[str] | None = None
    mac: str | None = None
    aliases: list[str] | None = None
    portMappings: list[PortMapping] | None = None
    bandwidth: dict[str, Any] | None = None
    dns: RuntimeDNS | None = None
    ipRanges: list[Any] | None = None
    infinibandGUID: str | None = None
    deviceID: str | None = None
    cgroupPath: str | None = None


class Attachment(_Model):
    containerID: str
    ifname: str


class NetConf(_Model):
    """One plugin's configuration, as the runtime sends it on stdin."""

    cniVersion: str
    name: str
    type: str
    args: dict[str, Any] | None = None
    ipMasq: StrictBool | None = None
    ipam: dict[str, Any] | None = None
    dns: DNS | None = None
    capabilities: dict[str, StrictBool] | None = None
    runtimeConfig: RuntimeConfig | None = None
    prevResult: dict[str, Any] | None = None
    valid_attachments: list[Attachment] | None = Field(
        default=None, alias="cni.dev/valid-attachments"
    )
    attachments: list[Attachment] | None = Field(default=None, alias="cni.dev/attachments")

    @field_validator("name", "type")
    @classmethod
    def _a_name(cls, v: str) -> str:
        # The network name ends up in file names (libcni's caches, the store's keys).
        if not v.strip():
            raise ValueError("must not be empty")
        if why := name_problem(v):
            raise ValueError(why)
        return v

    def valid_attachment_keys(self) -> set[tuple[str, str]] | None:
        """(containerID, ifname) pairs the runtime says are still valid (GC).

        Both the 1.1.0 key and the older `cni.dev/attachments` are read; None
        when neither is present (cnitool), which means nothing is valid.
        """
        lists = [x for x in (self.valid_attachments, self.attachments) if x is not None]
        if not lists:
            return None
        return {(a.containerID, a.ifname) for lst in lists for a in lst}

    def capability(self, name: str) -> bool:
        return bool(self.capabilities and self.capabilities.get(name))


ConfT = TypeVar("ConfT", bound=NetConf)


def render_validation_error(err: ValidationError) -> str:
    """pydantic errors as `key: message` lines a person can act on."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(config)"
        lines.append(f"{loc}: {e['msg']}")
    return "; ".join(lines)


def check_version_field(doc: dict[str, Any]) -> str:
    """cniVersion present, a string (7), and supported (1)."""
    v = doc.get("cniVersion")
    if v is None:
        raise CNIError(Code.INVALID_CONFIG, "invalid network config", "cniVersion: missing")
    if not isinstance(v, str):
        raise CNIError(
            Code.INVALID_CONFIG, "invalid network config", "cniVersion: must be a string"
        )
    return cniversion.require_supported(v)


@overload
def parse_netconf(doc: dict[str, Any]) -> NetConf: ...
@overload
def parse_netconf(doc: dict[str, Any], model: type[ConfT]) -> ConfT: ...
def parse_netconf(doc: dict[str, Any], model: type[NetConf] = NetConf) -> NetConf:
    """The config as `model` (NetConf or a plugin's subclass of it); errors 1 and 7."""
    check_version_field(doc)
    return validate_netconf(doc, model)


def validate_netconf(doc: dict[str, Any], model: type[ConfT]) -> ConfT:
    """The config as `model`, its cniVersion already checked (check_version_field); error 7."""
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        raise CNIError(
            Code.INVALID_CONFIG, "invalid network config", render_validation_error(e)
        ) from None
