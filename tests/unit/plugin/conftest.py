"""The plugin's handlers driven through the real dispatcher, against the in-tree fake engine
and fake namespaces, with a real SQLite store on tmp_path (no Docker engine needed)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cni2cnm.cni import skel
from cni2cnm.engine import RELEASES, Container, EngineAPI, EngineSettings, engine_host
from cni2cnm.plugin import DockerPlugin
from cni2cnm.store import Attachment, Store
from cni2cnm.testing import FakeEngine, FakeNamespaces

HOST = "unix:///fake/docker.sock"
DEAD = "unix:///run/no-engine.sock"
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
FLAVOURS = {name: release.api for name, release in RELEASES.items()}


@dataclass
class Outcome:
    rc: int
    out: str

    @property
    def doc(self) -> dict[str, Any] | None:
        return json.loads(self.out) if self.out.strip() else None

    def ok(self) -> dict[str, Any]:
        assert self.rc == 0, f"expected success, got {self.out}"
        doc = self.doc
        assert doc is not None, "expected a result on stdout"
        return doc

    def silent(self) -> None:
        assert (self.rc, self.out) == (0, ""), f"expected silent success, got {self.out}"

    def error(self, code: int) -> dict[str, Any]:
        doc = self.doc
        assert self.rc == 1 and doc is not None, f"expected error {code}, got {self.out!r}"
        assert doc.get("code") == code, f"expected code {code}, got {doc}"
        assert set(doc) <= {"cniVersion", "code", "msg", "details"}, doc
        return doc


@dataclass
class World:
    """One node: its engines (by DOCKER_HOST), its namespaces and a stateDir."""

    ns: FakeNamespaces
    engine: FakeEngine
    state_dir: str
    net_name: str = "pods"
    version: str = "1.0.0"
    extra_conf: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, FakeEngine] = field(default_factory=dict)
    factory_calls: list[str] = field(default_factory=list)

    def engine_factory(self, settings: EngineSettings, environ: Mapping[str, str],
                       recorded: str = "") -> EngineAPI:
        """The node's engine at the address the plugin's own rule picks (engine_host)."""
        host = engine_host(settings, environ, recorded)
        self.factory_calls.append(host)
        if host in self.engines:
            return self.engines[host]
        return FakeEngine(self.ns, base_url=host, down=True)  # nothing listens there

    def conf(self, **kw: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {"cniVersion": self.version, "name": "cninet", "type": "cni2cnm",
                               "network": self.net_name, "stateDir": self.state_dir,
                               **self.extra_conf}
        doc.update(kw)
        return doc

    def run(self, command: str, cid: str = "", netns: str = "", ifname: str = "eth0", *,
            conf: dict[str, Any] | None = None, args: str = "", prev: Any = None,
            env: Mapping[str, str] | None = None) -> Outcome:
        doc = conf if conf is not None else self.conf()
        if prev is not None:
            doc = {**doc, "prevResult": prev}
        environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
                   "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin", "DOCKER_HOST": HOST}
        if command in ("GC", "STATUS"):
            environ.update(CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="")
        if args:
            environ["CNI_ARGS"] = args
        environ.update(env or {})
        plugin = DockerPlugin(environ, engine_factory=self.engine_factory, namespaces=self.ns)
        out = io.StringIO()
        rc = skel.dispatch(lambda: plugin, environ, io.BytesIO(json.dumps(doc).encode()), out)
        return Outcome(rc, out.getvalue())

    # ---- the node's containers --------------------------------------------------------

    def pod(self, name: str = "web", **kw: Any) -> Container:
        """A running pause container with network mode none (cri-dockerd's pod sandbox)."""
        cid = self.engine.create_container(name, **kw)
        c = self.engine.container(cid)
        assert c is not None
        return c

    def inspect(self, ref: str) -> Container:
        c = self.engine.container(ref)
        assert c is not None, f"no container {ref}"
        return c

    def networks_of(self, ref: str) -> list[str]:
        return sorted(n for n, ep in self.inspect(ref).endpoints.items()
                      if ep.attached or n == "none")

    def links(self, path: str) -> dict[str, Any]:
        with self.ns.open(path) as view:
            return {lk.name: lk for lk in view.links()}

    def records(self) -> list[Attachment]:
        with Store(self.state_dir) as store:
            return store.list()

    def add(self, pod: Container, **kw: Any) -> dict[str, Any]:
        return self.run("ADD", pod.id, netns(pod), args=cri_args(pod), **kw).ok()


def netns(c: Container) -> str:
    return f"/proc/{c.pid}/ns/net"


def cri_args(c: Container) -> str:
    return f"{POD_ARGS};K8S_POD_INFRA_CONTAINER_ID={c.id}"


def make_world(tmp_path: Path, api: tuple[int, int] = RELEASES["20.10"].api) -> World:
    ns = FakeNamespaces()
    engine = FakeEngine(ns, api=api, base_url=HOST)
    engine.add_network("pods", subnet="10.240.0.0/24")
    world = World(ns=ns, engine=engine, state_dir=str(tmp_path / "state"))
    world.engines[HOST] = engine
    return world


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A Docker 20.10 node (API 1.41) with a bridge network `pods` (10.240.0.0/24)."""
    return make_world(tmp_path)


@pytest.fixture(params=sorted(FLAVOURS), ids=lambda k: f"docker-{k}")
def any_world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """The same node on each engine flavour the fake models."""
    return make_world(tmp_path, FLAVOURS[request.param])
