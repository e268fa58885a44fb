"""cni2cnm's own configuration keys, on top of the spec's (cni2cnm.cni.config.NetConf)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from cni2cnm.cni.config import BY_KEY_ONLY, NetConf
from cni2cnm.cni.logs import LogLevel
from cni2cnm.cni.names import encodable

DEFAULT_STATE_DIR = "/var/lib/cni/cni2cnm"
DEFAULT_DOCKER_TIMEOUT = 45.0
DEFAULT_SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
DEFAULT_SANDBOX_PIDS = 16
DEFAULT_SANDBOX_MEMORY_MIB = 16
MIN_SANDBOX_MEMORY_MIB = 6  # dockerd refuses less ("Minimum memory limit allowed is 6MB")
# How the executable uses a daemon (daemon/wire.py's MODE_* name and describe each).
DaemonMode = Literal["auto", "manual", "off"]


class TLS(BaseModel):
    model_config = ConfigDict(extra="allow", **BY_KEY_ONLY)

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: StrictBool = True


class PluginConf(NetConf):
    """One cni2cnm entry of a conflist, as the runtime sends it on stdin."""

    network: str | None = None
    dockerHost: str | None = None
    dockerTimeout: float = Field(default=DEFAULT_DOCKER_TIMEOUT, gt=0, le=600, strict=True)
    tls: TLS | None = None
    stateDir: str = DEFAULT_STATE_DIR
    logFile: str | None = None
    logLevel: LogLevel | None = None
    mode: Literal["auto", "container", "proxy"] = "auto"
    sandboxImage: str = DEFAULT_SANDBOX_IMAGE
    # A sandbox only holds a namespace (pause: one process, well under 1 MiB); 0: no limit.
    sandboxPidsLimit: int = Field(default=DEFAULT_SANDBOX_PIDS, ge=0, strict=True)
    sandboxMemoryMiB: int = Field(default=DEFAULT_SANDBOX_MEMORY_MIB, ge=0, strict=True)
    daemonSocket: str | None = None  # read by the executable before this model (entry.py)
    daemon: DaemonMode = "auto"  # read by the executable too (daemon/client.py)
    detachNone: StrictBool = True
    aliases: list[str] = Field(default_factory=list)
    driverOpts: dict[str, str] = Field(default_factory=dict)

    @field_validator("stateDir", "logFile")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must be an absolute path")
        return v

    @field_validator("stateDir", "logFile", "dockerHost", "sandboxImage", "daemonSocket")
    @classmethod
    def _usable_text(cls, v: str | None) -> str | None:
        # A NUL cannot be in a path or a URL; a lone surrogate (undecodable bytes) cannot be
        # encoded for the system calls these values reach.
        if v is not None and ("\0" in v or not encodable(v)):
            raise ValueError("must not contain NUL or undecodable characters")
        return v

    @field_validator("sandboxMemoryMiB")
    @classmethod
    def _docker_minimum(cls, v: int) -> int:
        if 0 < v < MIN_SANDBOX_MEMORY_MIB:
            raise ValueError(f"must be 0 (no limit) or at least {MIN_SANDBOX_MEMORY_MIB}: "
                             "dockerd refuses less")
        return v

    @property
    def docker_network(self) -> str:
        """The Docker network to attach to: `network`, else the CNI network name."""
        return self.network or self.name
