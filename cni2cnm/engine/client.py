"""The Docker engine adapter over the Docker SDK. Knows Docker, knows nothing of CNI.

Everything the Docker SDK or `requests` can raise is turned into one of the
EngineError classes (errors.py) here, so callers never see a library exception.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from cni2cnm.engine.address import check_address, redact
from cni2cnm.engine.errors import (
    EngineConfigError,
    EngineUnavailable,
    NotConnected,
    NotFound,
    Rejected,
    classify,
)
from cni2cnm.engine.models import (
    DEFAULT_HOST,
    DEFAULT_TIMEOUT,
    Container,
    ContainerExit,
    Endpoint,
    Labelled,
    Member,
    Network,
    SandboxSpec,
    Subnet,
    TLSSettings,
)
from cni2cnm.engine.pool import ClientPool
from cni2cnm.engine.protocol import EngineAPI
from cni2cnm.engine.versions import API_IFNAME, API_MAC_ON_CONNECT

log = logging.getLogger("cni2cnm.engine")


_PLACEHOLDER_API = "1.24"  # the SDK's minimum; replaced by the engine's own before any call


class Engine:
    """A thin, typed view of the Docker API calls cni2cnm needs."""

    def __init__(self, base_url: str = DEFAULT_HOST, timeout: float = DEFAULT_TIMEOUT,
                 tls: TLSSettings | None = None, pool: ClientPool | None = None) -> None:
        check_address(base_url)
        self.base_url = base_url
        self.shown = redact(base_url)  # what messages print: never the userinfo
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

            tls_config = self._tls_config()
            # A process that asks the same engine again (the daemon) negotiates only once.
            known = self.pool.negotiated.get(self.base_url) if self.pool else None
            with self._translate("connect to the engine"):
                # Never "auto" here: the SDK would negotiate inside the constructor, before
                # trust_env can be turned off, and wrap a TLS failure in a bare
                # DockerException.
                client = docker.APIClient(
                    base_url=self.base_url, version=known or _PLACEHOLDER_API,
                    # the stubs say int; the SDK hands it to requests, which takes seconds
                    # as a float (dockerTimeout may be 0.5)
                    timeout=self.timeout,  # type: ignore[arg-type]
                    tls=tls_config,
                )
            # The config decides how the engine is reached, never the environment: with
            # trust_env, requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace the
            # configured CA and HTTPS_PROXY/ALL_PROXY route engine traffic through a proxy
            # (and scans the whole environment on every call).
            client.trust_env = False
            if known is None:
                try:
                    with self._translate("read the engine's API version"):
                        api = client.version(api_version=False).get("ApiVersion")
                    if not api:
                        raise EngineUnavailable(f"{self.shown} did not say its API version")
                    # the SDK has no public way to set the version it speaks
                    client._version = str(api)  # type: ignore[attr-defined]
                except BaseException:
                    client.close()
                    raise
            self._client = client
            if self.pool is not None:
                self.pool.negotiated[self.base_url] = client.api_version
        return self._client

    def _tls_config(self) -> Any:
        if self.tls is None:
            return False
        import docker.errors
        import docker.tls

        for what, path in (("ca", self.tls.ca), ("cert", self.tls.cert),
                           ("key", self.tls.key)):
            if path is None:
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(4096)
            except OSError as e:
                raise EngineConfigError(f"tls.{what} {path}: {e.strerror}") from None
            if b"-----BEGIN" not in head:
                raise EngineConfigError(f"tls.{what} {path}: not a PEM file")
        if bool(self.tls.cert) != bool(self.tls.key):
            raise EngineConfigError("tls: cert and key must be given together")
        cert = (self.tls.cert, self.tls.key) if self.tls.cert and self.tls.key else None
        try:
            return docker.tls.TLSConfig(client_cert=cert, ca_cert=self.tls.ca,
                                        verify=self.tls.verify)
        except docker.errors.TLSParameterError as e:
            raise EngineConfigError(f"tls: {e}") from None

    def _tls_files(self) -> str:
        if self.tls is None:
            return "; the config has no tls settings for this engine"
        files = [f"tls.{k} {v}" for k, v in (("ca", self.tls.ca), ("cert", self.tls.cert),
                                             ("key", self.tls.key)) if v]
        return f"; check {', '.join(files) or 'the tls settings'}"

    def _tls_problem(self, err: Any) -> str:
        """What failed in a TLS handshake, naming the check and the config's file."""
        tls = self.tls or TLSSettings()
        reason = str(getattr(err, "reason", None) or "").upper()
        verify = getattr(err, "verify_message", None)
        if verify:  # this side checked the engine's certificate and refused it
            return (f"the engine's certificate failed verification ({verify}) against "
                    f"tls.ca {tls.ca or '(the system CAs)'}; the CA that signed the engine's "
                    "certificate must be tls.ca, and dockerHost must be a name or address "
                    "the certificate is for")
        if "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
            # the engine checked our certificate (or its absence) and refused it
            if not tls.cert:
                return (f"the engine refused the connection ({reason.lower()}): it requires "
                        "a client certificate and the config gives none; set tls.cert and "
                        "tls.key")
            return (f"the engine refused the client certificate tls.cert {tls.cert} "
                    f"({reason.lower()}): it has expired, is not signed by the CA the engine "
                    "trusts (--tlscacert), or is not for client authentication")
        if "NO_CERTIFICATE_OR_CRL_FOUND" in reason:
            return f"tls.ca {tls.ca} holds no certificate ({reason.lower()})"
        if "KEY_VALUES_MISMATCH" in reason:
            return f"tls.key {tls.key} is not the key of tls.cert {tls.cert}"
        return f"{_reason(err)}{self._tls_files()}"

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
        raw = self._unless_missing(f"inspect container {ref}",
                                   lambda: self.client.inspect_container(ref))
        return None if raw is None else _container(raw)

    def running_container_ids(self) -> list[str]:
        with self._translate("list containers"):
            return [c["Id"] for c in self.client.containers(filters={"status": "running"})]

    def containers_with_label(self, label: str) -> list[Labelled]:
        with self._translate("list containers"):
            raw = self.client.containers(all=True, filters={"label": label})
        return [Labelled(id=c["Id"], name=((c.get("Names") or [""])[0]).lstrip("/"),
                         labels=dict(c.get("Labels") or {}), state=c.get("State") or "")
                for c in raw]

    def run_sandbox(self, spec: SandboxSpec) -> str:
        """Create and start a container whose only network is `spec.network`; its ID.

        The sandbox only holds a network namespace: it runs with no capabilities, a
        read-only root filesystem, no-new-privileges, and the spec's pids and memory limits.
        """
        self.ensure_image(spec.image)
        with self._translate(f"create sandbox container {spec.name}"):
            endpoint = self.client.create_endpoint_config(
                ipv4_address=spec.ipv4, ipv6_address=spec.ipv6,
                aliases=list(spec.aliases) or None, driver_opt=spec.driver_opts or None,
                mac_address=spec.mac,
            )
            created = self.client.create_container(
                spec.image, name=spec.name, labels=spec.labels,
                host_config=self.client.create_host_config(
                    network_mode=spec.network, restart_policy={"Name": "no"}, init=False,
                    cap_drop=["ALL"], read_only=True, security_opt=["no-new-privileges"],
                    pids_limit=spec.pids_limit or None, mem_limit=spec.memory or None,
                ),
                networking_config=self.client.create_networking_config(
                    {spec.network: endpoint}),
            )
        cid = str(created["Id"])
        with self._translate(f"start sandbox container {spec.name}"):
            self.client.start(cid)
        return cid

    def ensure_image(self, image: str) -> None:
        """Pull the image unless the engine has it (by tag or by digest)."""
        if self.has_image(image):
            return
        repo, tag = split_image_ref(image)
        with self._translate(f"pull image {image}"):
            self.client.pull(repo, tag=tag)

    def has_image(self, image: str) -> bool:
        return self._unless_missing(f"inspect image {image}",
                                    lambda: self.client.inspect_image(image)) is not None

    def remove_container(self, ref: str) -> bool:
        """Remove with force; False when it was already gone."""
        def remove() -> bool:
            self.client.remove_container(ref, force=True)
            return True

        return self._unless_missing(f"remove container {ref}", remove) is not None

    # ---- networks ---------------------------------------------------------

    def network(self, ref: str) -> Network | None:
        raw = self._unless_missing(f"inspect network {ref}",
                                   lambda: self.client.inspect_network(ref))
        return None if raw is None else _network(raw)

    def connect(self, container: str, network: str, *, ipv4: str | None = None,
                ipv6: str | None = None, aliases: list[str] | None = None,
                mac: str | None = None, driver_opts: dict[str, str] | None = None) -> None:
        with self._translate(f"connect {container} to {network}"):
            self.client.connect_container_to_network(
                container, network, ipv4_address=ipv4, ipv6_address=ipv6,
                aliases=aliases or None, driver_opt=driver_opts or None, mac_address=mac,
            )

    def disconnect(self, container: str, network: str, *, force: bool = False) -> None:
        """NotConnected when the container has no endpoint there; NotFound when dockerd
        knows no such container (with force it then looks `container` up as an endpoint
        NAME, and answers 404 "endpoint X not found" when there is none)."""
        try:
            with self._translate(f"disconnect {container} from {network}"):
                self.client.disconnect_container_from_network(container, network,
                                                              force=force)
        except Rejected as e:
            if "not found" in e.explanation.lower():  # a 500 for a vanished endpoint
                raise NotConnected(e.explanation, e.status) from None
            raise

    # ---- errors -----------------------------------------------------------

    def _unless_missing(self, what: str, call: Callable[[], Any]) -> Any | None:
        """The call's answer, None when the engine answers 404."""
        try:
            with self._translate(what):
                return call()
        except NotFound:
            return None

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        import docker.errors
        import requests.exceptions

        try:
            yield
        except docker.errors.APIError as e:
            if e.status_code is None:
                self._broken = True
                raise EngineUnavailable(_explain(e)) from None
            if e.status_code == 400 and "request to an https server" in _explain(e).lower():
                raise EngineConfigError(
                    f"cannot {what}: {self.shown} speaks TLS only ({_explain(e)}); give "
                    "the config's tls {ca, cert, key} for it") from None
            raise classify(e.status_code, _explain(e)) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            self._broken = True  # its connection may be half-used: never hand it on
            # requests' SSLError, or a TLS alert that came while reading the answer
            tls_error = _ssl_error(e) or (
                e if isinstance(e, requests.exceptions.SSLError) else None)
            if tls_error is not None:
                raise EngineConfigError(f"cannot {what}: TLS with {self.shown} failed: "
                                        f"{self._tls_problem(tls_error)}") from None
            raise EngineUnavailable(
                f"cannot {what}: {self.shown} did not answer ({_reason(e)})"
            ) from None
        except docker.errors.DockerException as e:
            self._broken = True
            raise EngineUnavailable(f"cannot {what} at {self.shown}: {_reason(e)}") from None
        except OSError as e:
            self._broken = True
            raise EngineUnavailable(f"cannot {what} at {self.shown}: {e}") from None


def split_image_ref(image: str) -> tuple[str, str]:
    """(repository, tag or digest) for a pull: `pause:3.10` -> (pause, 3.10),
    `pause@sha256:...` -> (pause, sha256:...), `host:5000/pause` -> (host:5000/pause,
    latest)."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        if ":" in repo.rsplit("/", 1)[-1]:  # name:tag@digest: the digest decides
            repo = repo.rsplit(":", 1)[0]
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"


def _ssl_error(e: BaseException) -> BaseException | None:
    """The ssl.SSLError under a requests/urllib3 error (through .reason, args, causes)."""
    import ssl

    seen: set[int] = set()
    cur: Any = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return cur
        seen.add(id(cur))
        nxt = getattr(cur, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = next((a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)),
                       None) or cur.__cause__ or cur.__context__
        cur = nxt
    return None


def _explain(e: Any) -> str:
    return str(getattr(e, "explanation", None) or e)


def _reason(e: BaseException) -> str:
    """The innermost cause, without the urllib3 noise around it."""
    text = str(e)
    for marker in ("Connection refused", "No such file or directory", "timed out",
                   "Permission denied", "Read timed out", "CERTIFICATE_VERIFY_FAILED",
                   "certificate verify failed", "doesn't match", "certificate required",
                   "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
                   "bad certificate", "certificate has expired"):
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
    running = bool(state.get("Running"))
    exited = None
    if not running and state.get("Status") in ("exited", "dead"):
        exited = ContainerExit(exit_code=int(state.get("ExitCode") or 0),
                               error=state.get("Error") or "",
                               oom_killed=bool(state.get("OOMKilled")))
    config = raw.get("Config") or {}
    return Container(
        id=raw["Id"],
        name=(raw.get("Name") or "").lstrip("/"),
        running=running,
        status=state.get("Status") or "",
        pid=int(state.get("Pid") or 0),
        network_mode=(raw.get("HostConfig") or {}).get("NetworkMode") or "",
        endpoints=endpoints,
        exit=exited,
        labels=dict(config.get("Labels") or {}),
    )


def _network(raw: dict[str, Any]) -> Network:
    ipam = (raw.get("IPAM") or {}).get("Config") or []
    members = tuple(
        Member(container_id=cid, name=m.get("Name") or "", endpoint_id=m.get("EndpointID") or "",
               mac=(m.get("MacAddress") or "").lower(), ipv4=m.get("IPv4Address") or None,
               ipv6=m.get("IPv6Address") or None)
        for cid, m in (raw.get("Containers") or {}).items()
    )
    return Network(
        id=raw["Id"],
        name=raw.get("Name") or "",
        driver=raw.get("Driver") or "",
        scope=raw.get("Scope") or "",
        internal=bool(raw.get("Internal")),
        attachable=bool(raw.get("Attachable")),
        ipv6=bool(raw.get("EnableIPv6")),
        subnets=tuple(Subnet(c.get("Subnet") or "", c.get("Gateway") or None) for c in ipam),
        members=members,
        options=dict(raw.get("Options") or {}),
    )


_CONFORMS: type[EngineAPI] = Engine  # mypy checks the adapter against the protocol
