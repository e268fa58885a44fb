"""An in-memory Docker engine for unit tests: implements engine.EngineAPI like dockerd.

Networks allocate addresses, containers hold endpoints and live in fake namespaces
(fake_netns.FakeNamespaces) where a connect makes the interface, and every refusal is the
typed error the real adapter makes of dockerd's answer, in dockerd's words. The engine
flavour follows the API version it speaks (the boundaries, and the releases it imitates,
RELEASES, are cni2cnm.engine.versions', the adapter's own):

    before API_RANDOM_MAC      MAC derived from the IPv4 address (02:42:<ip>)
    before API_IFNAME          interfaces eth0, eth1, ... in connect order, never reused;
                               the ifname driver option ignored
    from API_IFNAME            the ifname option honoured by built-in drivers, else the first
                               ethN not in use
    a FAILED connect           leaves a stale Networks entry with an empty EndpointID: for an
                               address in use, and for anything before
                               API_CONNECT_VALIDATES_IP (from it, addresses outside the
                               subnet are refused first, "invalid endpoint settings")
    from API_MAC_AT_CREATE     a MAC given at container create (sandboxes) is applied
    from API_RANDOM_MAC        random MACs
    from API_MAC_ON_CONNECT    the MAC given on connect is applied

tests/integration/test_engine_contract.py runs the same suite against it and against dockerd.

Test controls: `down` (every call raises EngineUnavailable), `fail(...)` (the Nth call of
a method raises an error, optionally counting only after a call of another method),
`then(...)` (run something after the Nth call of a method), and `calls` (what was asked).
"""

from __future__ import annotations

import itertools
import random
from typing import Any, TypeVar

from cni2cnm import netns
from cni2cnm.engine import (
    API_CONNECT_VALIDATES_IP,
    API_IFNAME,
    API_MAC_AT_CREATE,
    API_MAC_ON_CONNECT,
    API_RANDOM_MAC,
    CONTAINER_NAME,
    IFNAME_OPTION,
    RELEASES,
    AddressInUse,
    AlreadyExists,
    Container,
    ContainerExit,
    EngineAPI,
    EngineError,
    InvalidRequest,
    Labelled,
    Network,
    NotAttachable,
    NotConnected,
    NotFound,
    Rejected,
    SandboxSpec,
    redact,
    release_of,
)
from cni2cnm.testing.fake_faults import Faults, api
from cni2cnm.testing.fake_netns import FakeNamespaces
from cni2cnm.testing.fake_state import (
    FakeContainer,
    FakeEndpoint,
    FakeNetwork,
    allocate,
    invalid_settings,
)
from cni2cnm.testing.fake_views import make_interface, remove_interface, to_container, to_network

NONE_MODE = ("container cannot be connected to multiple networks with one of the networks in "
             "private (none) mode")
SHARED_MODE = ("container sharing network namespace with another container or host cannot be "
               "connected to any other network")
HOST_MODE = "container cannot be disconnected from host network or connected to host network"


Named = TypeVar("Named", FakeContainer, FakeNetwork)


def _by_ref(objs: list[Named], ref: str) -> Named | None:
    """dockerd's lookup: the full ID, else the name, else a unique ID prefix."""
    for key in ("id", "name"):
        found = [o for o in objs if getattr(o, key) == ref]
        if found:
            return found[0]
    prefixed = [o for o in objs if ref and o.id.startswith(ref)]
    return prefixed[0] if len(prefixed) == 1 else None


class FakeEngine(Faults):
    """One dockerd, in memory, speaking `api`: RELEASES["20.10"].api (the default),
    RELEASES["28"].api, ..."""

    def __init__(self, namespaces: FakeNamespaces | None = None,
                 api: tuple[int, int] = RELEASES["20.10"].api,
                 base_url: str = "unix:///fake/docker.sock", down: bool = False,
                 seed: int = 1) -> None:
        self.namespaces = namespaces if namespaces is not None else FakeNamespaces()
        self.api = api
        self.base_url = base_url
        self.shown = redact(base_url)
        self.down = down
        self.role: str | None = None  # "manager" / "worker" on a swarm node
        self.daemon_netns = netns.of_pid(1)  # dockerd's own namespace: host-mode containers'
        self.rng = random.Random(seed)
        self.networks: dict[str, FakeNetwork] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.images: set[str] = set()
        self.unpullable: set[str] = set()
        self.exiting_images: dict[str, int] = {}  # image -> exit code of its command
        self.closed = 0
        Faults.__init__(self)
        for name, driver in (("none", "null"), ("host", "host")):
            self.add_network(name, driver=driver, subnet=None)
        self.add_network("bridge", subnet="172.17.0.0/16", user_subnets=False)

    def _hex(self) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(64))

    # ---- building the world -----------------------------------------------------------

    def add_network(self, name: str, *, subnet: str | None = "10.240.0.0/24",
                    gateway: str | None = None, subnet6: str | None = None,
                    gateway6: str | None = None, driver: str = "bridge", scope: str = "local",
                    internal: bool = False, attachable: bool = False,
                    user_subnets: bool = True, reports_mac: bool = True,
                    gateway_service: bool = True, id: str | None = None) -> FakeNetwork:
        net = FakeNetwork.make(id or self._hex(), name, subnet=subnet, gateway=gateway,
                               subnet6=subnet6, gateway6=gateway6, driver=driver, scope=scope,
                               internal=internal, attachable=attachable,
                               user_subnets=user_subnets, reports_mac=reports_mac,
                               gateway_service=gateway_service)
        self.networks[net.id] = net
        return net

    def add_overlay(self, name: str, subnet: str = "10.70.0.0/24", attachable: bool = True
                    ) -> FakeNetwork:
        """A swarm overlay (give the engine a `role` to make it a swarm node)."""
        return self.add_network(name, subnet=subnet, driver="overlay", scope="swarm",
                                attachable=attachable)

    def remove_network(self, ref: str) -> None:
        net = self._network(ref)
        if any(net.name in c.endpoints for c in self.containers.values()):
            raise Rejected(f"error while removing network: network {net.name} id {net.id} "
                           "has active endpoints", 403)
        del self.networks[net.id]

    def create_container(self, name: str, image: str = "pause", network_mode: str = "none",
                         labels: dict[str, str] | None = None, start: bool = True,
                         id: str | None = None) -> str:
        if not CONTAINER_NAME.fullmatch(name):
            raise Rejected(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                           "are allowed", 400)
        if any(c.name == name for c in self.containers.values()):
            other = next(c for c in self.containers.values() if c.name == name)
            raise AlreadyExists(f'Conflict. The container name "/{name}" is already in use by '
                                f'container "{other.id}". You have to remove (or rename) that '
                                "container to be able to reuse that name.", 409)
        c = FakeContainer(id=id or self._hex(), name=name, network_mode=network_mode,
                          labels=dict(labels or {}))
        self.images.add(image)
        if not network_mode.startswith("container:"):
            net = self._network("bridge" if network_mode == "default" else network_mode)
            c.endpoints[net.name] = FakeEndpoint(network_id=net.id)
        self.containers[c.id] = c
        if start:
            self.start(c.id)
        return c.id

    def start(self, ref: str) -> None:
        """The container runs: a new process, a new namespace, its endpoints made."""
        c = self._container(ref)
        c.pid, c.state, c.exit, c.next_eth = self.namespaces.new_pid(), "running", None, 0
        proc = netns.of_pid(c.pid)
        if c.network_mode == "host":
            c.ns = self.namespaces.bind(proc, self.daemon_netns)
        elif c.network_mode.startswith("container:"):
            owner = self._container(c.network_mode.split(":", 1)[1])
            c.ns = self.namespaces.bind(proc, netns.of_pid(owner.pid))
        else:
            c.ns = self.namespaces.create(proc, self.sandbox_key(c))
        try:
            for name in sorted(c.endpoints):  # libnetwork's order, not the connect order
                ep = c.endpoints[name]
                self._realise(c, self.networks[ep.network_id], ep)
        except EngineError:
            self.stop(c.id)
            c.state, c.exit = "created", None
            raise

    def stop(self, ref: str, exit_code: int = 0, error: str = "", oom: bool = False) -> None:
        """The container's process ends: its interfaces and addresses go, its namespace
        with them (unless a bind mount holds it), its Networks entries stay, empty."""
        c = self._container(ref)
        if not c.running:
            return
        for name, ep in c.endpoints.items():
            self._release(c, ep)
            c.endpoints[name] = FakeEndpoint(network_id=ep.network_id, config=ep.config)
        remove_interface(self.namespaces, c.gwbridge_mac)
        c.gwbridge_mac = ""
        self.namespaces.unlink(netns.of_pid(c.pid))
        self.namespaces.unlink(self.sandbox_key(c))
        c.state, c.pid, c.ns = "exited", 0, None
        c.exit = ContainerExit(exit_code=exit_code, error=error, oom_killed=oom)

    def restart(self, ref: str) -> None:
        self.stop(ref)
        self.start(ref)

    def lose_container(self, ref: str) -> None:
        """The container is gone but dockerd kept its endpoints (found by its name)."""
        c = self._container(ref)
        for name, ep in c.endpoints.items():
            if ep.endpoint_id and name not in ("none", "host"):
                self.networks[ep.network_id].orphans[c.name] = ep
        self.namespaces.unlink(netns.of_pid(c.pid))
        del self.containers[c.id]

    def sandbox_key(self, c: FakeContainer) -> str:
        return f"/var/run/docker/netns/{c.id[:12]}"

    # ---- lookups (dockerd's rules: ID, unique ID prefix, name) ------------------------

    def _lookup(self, ref: str) -> FakeContainer | None:
        return _by_ref(list(self.containers.values()), ref.lstrip("/"))

    def _container(self, ref: str) -> FakeContainer:
        c = self._lookup(ref)
        if c is None:
            raise NotFound(f"No such container: {ref}", 404)
        return c

    def _find_network(self, ref: str) -> FakeNetwork | None:
        return _by_ref(list(self.networks.values()), ref)

    def _network(self, ref: str) -> FakeNetwork:
        net = self._find_network(ref)
        if net is None:
            raise NotFound(f"network {ref} not found", 404)
        return net

    # ---- EngineAPI ------------------------------------------------------------------

    def close(self) -> None:
        self.closed += 1

    @api
    def api_version(self) -> tuple[int, int]:
        return self.api

    def supports_ifname(self) -> bool:
        return self.api_version() >= API_IFNAME

    def supports_mac_on_connect(self) -> bool:
        return self.api_version() >= API_MAC_ON_CONNECT

    @api
    def version(self) -> dict[str, Any]:
        release = release_of(self.api)
        return {"Version": release.version, "ApiVersion": _dotted(self.api),
                "MinAPIVersion": _dotted(release.min_api)}

    @api
    def swarm_role(self) -> str | None:
        return self.role

    @api
    def container(self, ref: str) -> Container | None:
        c = self._lookup(ref)
        return to_container(c, self.networks) if c is not None else None

    @api
    def running_container_ids(self) -> list[str]:
        return [c.id for c in self.containers.values() if c.running]

    @api
    def containers_with_label(self, label: str) -> list[Labelled]:
        key, _, value = label.partition("=")
        return [Labelled(id=c.id, name=c.name, labels=dict(c.labels), state=c.state)
                for c in self.containers.values()
                if key in c.labels and (not value or c.labels[key] == value)]

    @api
    def run_sandbox(self, spec: SandboxSpec) -> str:
        self.ensure_image(spec.image)
        net = self._network(spec.network)
        mac = spec.mac if self.api >= API_MAC_AT_CREATE else None
        cid = self.create_container(spec.name, spec.image, net.name, spec.labels, start=False)
        c = self.containers[cid]
        c.limits = {"pids": spec.pids_limit, "memory": spec.memory}
        c.endpoints[net.name].config = {"ipv4": spec.ipv4, "ipv6": spec.ipv6,
                                        "aliases": list(spec.aliases), "mac": mac,
                                        "driver_opts": dict(spec.driver_opts)}
        self.start(cid)  # a refused address fails here: the container stays created
        if spec.image in self.exiting_images:
            self.stop(cid, exit_code=self.exiting_images[spec.image])
        return cid

    @api
    def ensure_image(self, image: str) -> None:
        if image in self.images:
            return
        if image in self.unpullable:
            raise NotFound(f"pull access denied for {image.split(':')[0]}, repository does "
                           "not exist or may require 'docker login'", 404)
        self.images.add(image)

    @api
    def has_image(self, image: str) -> bool:
        return image in self.images

    @api
    def remove_container(self, ref: str) -> bool:
        c = self._lookup(ref)
        if c is None:
            return False
        self.stop(c.id, exit_code=137)
        del self.containers[c.id]
        return True

    @api
    def network(self, ref: str) -> Network | None:
        net = self._find_network(ref)
        if net is None:
            return None
        local = [c for c in self.containers.values()
                 if c.running and (ep := c.endpoints.get(net.name)) and ep.endpoint_id]
        if net.scope == "swarm" and self.role == "worker" and not local:
            return None  # a worker sees a swarm network only while it has attachments
        return to_network(net, local)

    @api
    def connect(self, container: str, network: str, *, ipv4: str | None = None,
                ipv6: str | None = None, aliases: list[str] | None = None,
                mac: str | None = None, driver_opts: dict[str, str] | None = None) -> None:
        c = self._container(container)
        net = self._network(network)
        if c.network_mode == "host" or net.name == "host":
            raise Rejected(HOST_MODE, 400)
        if c.network_mode.startswith("container:"):
            raise Rejected(SHARED_MODE, 400)
        attached = {n for n, ep in c.endpoints.items() if ep.endpoint_id or not c.running}
        if attached and (net.name == "none" or "none" in attached) and net.name not in attached:
            raise Rejected(NONE_MODE, 400)
        current = c.endpoints.get(net.name)
        if current is not None and (current.endpoint_id or not c.running):
            raise AlreadyExists(f"endpoint with name {c.name} already exists in network "
                                f"{net.name}", 403)
        if net.scope == "swarm" and not net.attachable:
            raise NotAttachable(f"Could not attach to network {net.name}: rpc error: code = "
                                f"PermissionDenied desc = network {net.name} not manually "
                                "attachable", 403)
        config = {"ipv4": ipv4, "ipv6": ipv6, "aliases": list(aliases or []),
                  "mac": mac if self.api >= API_MAC_ON_CONNECT else None,
                  "driver_opts": dict(driver_opts or {})}
        ep = FakeEndpoint(network_id=net.id, config=config)
        if not c.running:  # recorded only; made when the container starts
            c.endpoints[net.name] = ep
            return
        if self.api >= API_CONNECT_VALIDATES_IP and (bad := invalid_settings(net, ipv4, ipv6)):
            raise InvalidRequest(bad, 400)  # checked first: no entry is left behind
        try:
            self._realise(c, net, ep)
        except EngineError as e:
            # the failed endpoint's entry stays behind (20.10: whatever failed)
            if self.api < API_CONNECT_VALIDATES_IP or isinstance(e, AddressInUse):
                c.endpoints[net.name] = FakeEndpoint(network_id=net.id, config=config)
            raise
        c.endpoints[net.name] = ep

    @api
    def disconnect(self, container: str, network: str, *, force: bool = False) -> None:
        c = self._lookup(container)
        if c is None:
            net = self._network(network)
            if force and container in net.orphans:  # dockerd looks it up as an endpoint name
                orphan = net.orphans.pop(container)
                net.release(orphan.ipv4, orphan.ipv6)
                remove_interface(self.namespaces, orphan.mac)
                return
            if force:
                raise NotFound(f"endpoint {container} not found", 404)
            raise NotFound(f"No such container: {container}", 404)
        net = self._network(network)
        if net.name == "host" and c.network_mode == "host":
            raise Rejected(HOST_MODE, 400)
        ep = c.endpoints.get(net.name)
        if ep is None or (c.running and not ep.endpoint_id):
            raise NotConnected(f"container {c.id} is not connected to network {net.name}", 500)
        self._release(c, ep)
        del c.endpoints[net.name]
        if c.gwbridge_mac and not any(self.networks[e.network_id].driver == "overlay"
                                      for e in c.endpoints.values()):
            remove_interface(self.namespaces, c.gwbridge_mac)
            c.gwbridge_mac = ""

    # ---- making an endpoint -----------------------------------------------------------

    def _realise(self, c: FakeContainer, net: FakeNetwork, ep: FakeEndpoint) -> None:
        """Allocate the endpoint's addresses and make its interface in the container."""
        cfg = ep.config
        if net.driver in ("null", "host"):
            ep.endpoint_id = self._hex()
            c.endpoints[net.name] = ep
            return
        assert c.ns is not None
        wanted: str = (cfg.get("driver_opts") or {}).get(IFNAME_OPTION) or ""
        if wanted and self.api >= API_IFNAME and net.builtin:
            ifname = wanted
        elif self.api >= API_IFNAME:  # the first name not in use
            ifname = next(f"eth{n}" for n in itertools.count() if not c.ns.named(f"eth{n}"))
        else:  # in connect order, never reused
            ifname = f"eth{c.next_eth}"
        if c.ns.named(ifname) is not None:
            raise Rejected(f"failed to add interface to sandbox: error renaming interface to "
                           f"{ifname}: file exists", 500)
        ep.ipv4, ep.ipv6 = allocate(net, c.id, cfg.get("ipv4"), cfg.get("ipv6"))
        if ifname == f"eth{c.next_eth}":
            c.next_eth += 1
        ep.ifname, ep.endpoint_id = ifname, self._hex()
        ep.mac = cfg.get("mac") or self._mac(ep.ipv4)
        make_interface(c, net, ep, lambda: self._mac(None))
        c.endpoints[net.name] = ep

    def _release(self, c: FakeContainer, ep: FakeEndpoint) -> None:
        """The address is free again; the interface goes only if it is still in the
        container's namespace: dockerd finds it there by name (an interface moved elsewhere
        stays where it is, with its address, and its peer stays on the bridge)."""
        net = self.networks.get(ep.network_id)
        if net is not None:
            net.release(ep.ipv4, ep.ipv6)
        if c.ns is not None:
            for link in list(c.ns.links.values()):
                if link.mac == ep.mac and ep.mac:
                    c.ns.remove_link(link.index)

    def _mac(self, ipv4: str | None) -> str:
        if ipv4 and self.api < API_RANDOM_MAC:
            octets = [int(x) for x in ipv4.split("/")[0].split(".")]
            return "02:42:" + ":".join(f"{o:02x}" for o in octets)
        first = (self.rng.randrange(256) & 0xFC) | 0x02  # locally administered, unicast
        rest = [self.rng.randrange(256) for _ in range(5)]
        return ":".join(f"{o:02x}" for o in [first, *rest])


def _dotted(api: tuple[int, int]) -> str:
    return f"{api[0]}.{api[1]}"


_CONFORMS: type[EngineAPI] = FakeEngine  # mypy checks the fake against the protocol
