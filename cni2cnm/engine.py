"""The Docker engine adapter. Knows Docker, knows nothing of CNI.

Everything the Docker SDK or `requests` can raise is turned into one of the
EngineError classes here, so callers never see a library exception.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("cni2cnm.engine")

DEFAULT_HOST = "unix:///var/run/docker.sock"
IFNAME_OPTION = "com.docker.network.endpoint.ifname"
API_IFNAME = (1, 48)  # Docker 28.0: the ifname driver option
API_MAC_ON_CONNECT = (1, 54)  # Docker 29.3: mac_address honoured on connect


class ClientPool:
    """Idle SDK clients, kept by a long-running process (the daemon) for the next request.

    A request takes a client and gives it back when it is done, so the client's keep-alive
    connection to dockerd stays open between requests. One client serves one request at a
    time; a client that met a connection error is closed instead of kept. At most
    `max_idle` clients are kept per engine, for the `max_engines` engines used last. The pool
    also remembers the API version agreed with each engine, so it is negotiated only once.
    Whoever owns the pool passes it to each Engine (`Engine(..., pool=pool)`).
    """

    def __init__(self, max_idle: int = 16, max_engines: int = 8) -> None:
        import threading
        from collections import OrderedDict

        self.max_idle = max_idle
        self.max_engines = max_engines
        self._idle: OrderedDict[tuple[Any, ...], list[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.negotiated: dict[str, str] = {}  # engine URL -> API version agreed with it

    def take(self, key: tuple[Any, ...]) -> Any | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: tuple[Any, ...], client: Any) -> None:
        surplus = []
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            if len(idle) < self.max_idle:
                idle.append(client)
            else:
                surplus.append(client)
            while len(self._idle) > self.max_engines:
                surplus.extend(self._idle.popitem(last=False)[1])
        for c in surplus:
            c.close()


class EngineError(Exception):
    """The engine said no, or could not be asked."""

    def __init__(self, explanation: str, status: int | None = None) -> None:
        super().__init__(explanation)
        self.explanation = explanation
        self.status = status


class EngineUnavailable(EngineError):
    """The engine cannot be reached, or did not answer in time."""


class NotFound(EngineError):
    """404: no such container, network or endpoint."""


class Conflict(EngineError):
    """403/409: already exists, address in use, forbidden in this state."""


class Rejected(EngineError):
    """Any other refusal (400, 500)."""


@dataclass(frozen=True)
class Endpoint:
    network_name: str
    network_id: str
    endpoint_id: str
    mac: str
    ipv4: str | None  # CIDR
    ipv6: str | None  # CIDR
    gateway: str | None
    ipv6_gateway: str | None
    aliases: tuple[str, ...] = ()

    @property
    def attached(self) -> bool:
        """Docker 20.10 leaves entries with an empty EndpointID after a failed connect."""
        return bool(self.endpoint_id)

    @property
    def addresses(self) -> list[str]:
        return [a for a in (self.ipv4, self.ipv6) if a]


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    running: bool
    status: str
    pid: int
    network_mode: str
    sandbox_key: str
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by network name

    def endpoint_in(self, network_id: str) -> Endpoint | None:
        for ep in self.endpoints.values():
            if ep.network_id == network_id:
                return ep
        return None

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class Subnet:
    subnet: str
    gateway: str | None


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    scope: str
    internal: bool
    attachable: bool
    ipv6: bool
    subnets: tuple[Subnet, ...]
    containers: dict[str, dict[str, Any]]  # container ID -> Name, EndpointID, MacAddress, ...
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def not_yet_visible(cls, ref: str) -> Network:
        """A swarm network a worker cannot inspect before its first local attachment:
        known by name only until a connect makes it visible."""
        return cls(id="", name=ref, driver="", scope="swarm", internal=False, attachable=True,
                   ipv6=False, subnets=(), containers={})

    @property
    def ref(self) -> str:
        return self.id or self.name


@dataclass(frozen=True)
class TLSSettings:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True


class Engine:
    """A thin, typed view of the Docker API calls cni2cnm needs."""

    def __init__(self, base_url: str = DEFAULT_HOST, timeout: float = 45.0,
                 tls: TLSSettings | None = None, pool: ClientPool | None = None) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.tls = tls
        self.pool = pool  # None: this Engine makes and closes its own client
        self._client: Any = None
        self._broken = False

    # ---- connection -------------------------------------------------------

    @property
    def _pool_key(self) -> tuple[Any, ...]:
        return self.base_url, self.timeout, self.tls

    @property
    def client(self) -> Any:
        if self._client is None and self.pool is not None:
            self._client = self.pool.take(self._pool_key)
        if self._client is None:
            import docker

            tls_config: Any = False
            if self.tls is not None:
                cert = (self.tls.cert, self.tls.key) if self.tls.cert and self.tls.key else None
                tls_config = docker.tls.TLSConfig(
                    client_cert=cert, ca_cert=self.tls.ca, verify=self.tls.verify
                )
            # A process that asks the same engine again (the daemon) negotiates only once.
            version = "auto" if self.pool is None else self.pool.negotiated.get(self.base_url,
                                                                                "auto")
            with self._translate("connect to the engine"):
                self._client = docker.APIClient(
                    base_url=self.base_url, version=version, timeout=self.timeout,
                    tls=tls_config,
                )
            if self.pool is not None:
                self.pool.negotiated[self.base_url] = self._client.api_version
            if self.base_url.startswith("unix:"):
                # Proxies never apply to a unix socket, but with trust_env requests reads the
                # whole process environment for them on every call (~15% of the daemon's CPU).
                self._client.trust_env = False
        return self._client

    def close(self) -> None:
        if self._client is not None:
            if self.pool is not None and not self._broken:
                self.pool.give(self._pool_key, self._client)
            else:
                self._client.close()
            self._client = None

    def api_version(self) -> tuple[int, int]:
        v = self.client.api_version
        major, minor = v.split(".")[:2]
        return int(major), int(minor)

    def supports_ifname(self) -> bool:
        return self.api_version() >= API_IFNAME

    def supports_mac_on_connect(self) -> bool:
        return self.api_version() >= API_MAC_ON_CONNECT

    def version(self) -> dict[str, Any]:
        with self._translate("read the engine version"):
            return dict(self.client.version())

    def info(self) -> dict[str, Any]:
        with self._translate("read the engine info"):
            return dict(self.client.info())

    def swarm_role(self) -> str | None:
        """"manager" or "worker" when this engine is an active swarm node, else None."""
        swarm = self.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            return None
        return "manager" if swarm.get("ControlAvailable") else "worker"

    # ---- containers -------------------------------------------------------

    def container(self, ref: str) -> Container | None:
        """Inspect a container by ID, ID prefix or name; None if there is none."""
        try:
            with self._translate(f"inspect container {ref}"):
                raw = self.client.inspect_container(ref)
        except NotFound:
            return None
        return _container(raw)

    def running_container_ids(self) -> list[str]:
        with self._translate("list containers"):
            return [c["Id"] for c in self.client.containers(filters={"status": "running"})]

    def containers_with_label(self, label: str) -> list[dict[str, Any]]:
        with self._translate("list containers"):
            return list(self.client.containers(all=True, filters={"label": label}))

    def run_sandbox(self, name: str, image: str, network: str, *, labels: dict[str, str],
                    ipv4: str | None = None, ipv6: str | None = None,
                    aliases: list[str] | None = None, mac: str | None = None,
                    driver_opts: dict[str, str] | None = None) -> str:
        """Create and start a container whose only network is `network`; returns its ID."""
        self.ensure_image(image)
        with self._translate(f"create sandbox container {name}"):
            endpoint = self.client.create_endpoint_config(
                ipv4_address=ipv4, ipv6_address=ipv6, aliases=aliases or None,
                driver_opt=driver_opts or None, mac_address=mac,
            )
            created = self.client.create_container(
                image, name=name, labels=labels,
                host_config=self.client.create_host_config(
                    network_mode=network, restart_policy={"Name": "no"}, init=False,
                ),
                networking_config=self.client.create_networking_config({network: endpoint}),
            )
        cid = str(created["Id"])
        with self._translate(f"start sandbox container {name}"):
            self.client.start(cid)
        return cid

    def ensure_image(self, image: str) -> None:
        try:
            with self._translate(f"inspect image {image}"):
                self.client.inspect_image(image)
            return
        except NotFound:
            pass
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        with self._translate(f"pull image {image}"):
            self.client.pull(repo or image, tag=tag or "latest")

    def remove_container(self, ref: str) -> bool:
        """Remove with force; False when it was already gone."""
        try:
            with self._translate(f"remove container {ref}"):
                self.client.remove_container(ref, force=True)
        except NotFound:
            return False
        return True

    # ---- networks ---------------------------------------------------------

    def network(self, ref: str) -> Network | None:
        try:
            with self._translate(f"inspect network {ref}"):
                raw = self.client.inspect_network(ref)
        except NotFound:
            return None
        return _network(raw)

    def connect(self, container: str, network: str, *, ipv4: str | None = None,
                ipv6: str | None = None, aliases: list[str] | None = None,
                mac: str | None = None, driver_opts: dict[str, str] | None = None) -> None:
        with self._translate(f"connect {container} to {network}"):
            self.client.connect_container_to_network(
                container, network, ipv4_address=ipv4, ipv6_address=ipv6,
                aliases=aliases or None, driver_opt=driver_opts or None, mac_address=mac,
            )

    def disconnect(self, container: str, network: str, *, force: bool = False) -> None:
        with self._translate(f"disconnect {container} from {network}"):
            self.client.disconnect_container_from_network(container, network, force=force)

    # ---- errors -----------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        import docker.errors
        import requests.exceptions

        try:
            yield
        except docker.errors.NotFound as e:
            raise NotFound(_explain(e), 404) from None
        except docker.errors.APIError as e:
            status = e.status_code
            cls = Conflict if status in (403, 409) else Rejected
            if status is None:
                cls = EngineUnavailable
                self._broken = True
            raise cls(_explain(e), status) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            self._broken = True  # its connection may be half-used: never hand it on
            raise EngineUnavailable(
                f"cannot {what}: {self.base_url} did not answer ({_reason(e)})"
            ) from None
        except docker.errors.DockerException as e:
            self._broken = True
            raise EngineUnavailable(f"cannot {what} at {self.base_url}: {_reason(e)}") from None
        except OSError as e:
            self._broken = True
            raise EngineUnavailable(f"cannot {what} at {self.base_url}: {e}") from None


def _explain(e: Any) -> str:
    return str(getattr(e, "explanation", None) or e)


def _reason(e: BaseException) -> str:
    """The innermost cause, without the urllib3 noise around it."""
    text = str(e)
    for marker in ("Connection refused", "No such file or directory", "timed out",
                   "Permission denied", "Read timed out"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _cidr(addr: str, prefix: int | None) -> str | None:
    return f"{addr}/{prefix}" if addr else None


def _container(raw: dict[str, Any]) -> Container:
    state = raw.get("State") or {}
    settings = raw.get("NetworkSettings") or {}
    endpoints = {}
    for name, ep in (settings.get("Networks") or {}).items():
        endpoints[name] = Endpoint(
            network_name=name,
            network_id=ep.get("NetworkID") or "",
            endpoint_id=ep.get("EndpointID") or "",
            mac=(ep.get("MacAddress") or "").lower(),
            ipv4=_cidr(ep.get("IPAddress") or "", ep.get("IPPrefixLen")),
            ipv6=_cidr(ep.get("GlobalIPv6Address") or "", ep.get("GlobalIPv6PrefixLen")),
            gateway=ep.get("Gateway") or None,
            ipv6_gateway=ep.get("IPv6Gateway") or None,
            aliases=tuple(ep.get("Aliases") or ()),
        )
    return Container(
        id=raw["Id"],
        name=(raw.get("Name") or "").lstrip("/"),
        running=bool(state.get("Running")),
        status=state.get("Status") or "",
        pid=int(state.get("Pid") or 0),
        network_mode=(raw.get("HostConfig") or {}).get("NetworkMode") or "",
        sandbox_key=settings.get("SandboxKey") or "",
        endpoints=endpoints,
    )


def _network(raw: dict[str, Any]) -> Network:
    ipam = (raw.get("IPAM") or {}).get("Config") or []
    return Network(
        id=raw["Id"],
        name=raw.get("Name") or "",
        driver=raw.get("Driver") or "",
        scope=raw.get("Scope") or "",
        internal=bool(raw.get("Internal")),
        attachable=bool(raw.get("Attachable")),
        ipv6=bool(raw.get("EnableIPv6")),
        subnets=tuple(Subnet(c.get("Subnet") or "", c.get("Gateway") or None) for c in ipam),
        containers=dict(raw.get("Containers") or {}),
        options=dict(raw.get("Options") or {}),
    )
