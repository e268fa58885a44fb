"""Network configuration models (pydantic v2).

Well-known keys from SPEC.md/CONVENTIONS.md are typed; this plugin's own keys
are typed too; anything else is kept (extra="allow") and ignored, as the spec
asks plugins to tolerate fields they do not know. Booleans and numbers are strict,
as libcni's JSON decoding is: "true" or "45" in quotes are errors, not coerced.
"""

from __future__ import annotations

import json
from typing import Any, Literal

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

DEFAULT_STATE_DIR = "/var/lib/cni/cni2cnm"
DEFAULT_DOCKER_TIMEOUT = 45.0
DEFAULT_SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


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


class TLS(_Model):
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: StrictBool = True


class Attachment(_Model):
    containerID: str
    ifname: str


class NetConf(_Model):
    """One plugin's configuration, as the runtime sends it on stdin."""

    # Only the JSON keys are config keys (not the Python names of aliased fields).
    model_config = ConfigDict(extra="allow", populate_by_name=False)

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

    # cni2cnm's own keys
    network: str | None = None
    dockerHost: str | None = None
    dockerTimeout: float = Field(default=DEFAULT_DOCKER_TIMEOUT, gt=0, le=600, strict=True)
    tls: TLS | None = None
    stateDir: str = DEFAULT_STATE_DIR
    logFile: str | None = None
    logLevel: Literal["debug", "info", "warning", "error"] | None = None
    mode: Literal["auto", "container", "proxy"] = "auto"
    sandboxImage: str = DEFAULT_SANDBOX_IMAGE
    daemonSocket: str | None = None  # read by the executable before this model (entry.py)
    # auto: use the daemon, start one on demand; manual: use one, never start; off: never use
    daemon: Literal["auto", "manual", "off"] = "auto"  # read by the executable too
    detachNone: StrictBool = True
    aliases: list[str] = Field(default_factory=list)
    driverOpts: dict[str, str] = Field(default_factory=dict)

    @field_validator("name", "type")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("stateDir")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path")
        return v

    @property
    def docker_network(self) -> str:
        """The Docker network to attach to: `network`, else the CNI network name."""
        return self.network or self.name

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


def render_validation_error(err: ValidationError) -> str:
    """pydantic errors as `key: message` lines a person can act on."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(config)"
        lines.append(f"{loc}: {e['msg']}")
    return "; ".join(lines)


def decode_json_object(data: bytes) -> dict[str, Any]:
    """Decode stdin as one JSON object (error 6 otherwise)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise CNIError(Code.DECODE_FAILURE, "cannot decode network config", str(e)) from None
    if not isinstance(doc, dict):
        raise CNIError(
            Code.DECODE_FAILURE,
            "cannot decode network config",
            f"expected a JSON object, got {type(doc).__name__}",
        )
    return doc


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


def parse_netconf(doc: dict[str, Any]) -> NetConf:
    check_version_field(doc)
    try:
        return NetConf.model_validate(doc)
    except ValidationError as e:
        raise CNIError(
            Code.INVALID_CONFIG, "invalid network config", render_validation_error(e)
        ) from None
