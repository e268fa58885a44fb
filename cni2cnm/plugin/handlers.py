"""The plugin: each CNI operation, top-down, as Docker calls.

    ADD    -> find the container's CNM sandbox, detach `none`, `network connect`,
              verify the interface inside CNI_NETNS, record, print the result
    DEL    -> `network disconnect --force` of what the store recorded, drop the record;
              an engine that does not answer leaves the record "deleting" (pending.py)
    CHECK  -> the recorded endpoint, the engine and the namespace still agree with prevResult
    GC     -> DEL every recorded attachment of this network the runtime no longer lists
    STATUS -> the engine answers and the network exists

Each handler runs inside errors.boundary, the one place lower-layer failures become CNI
errors; the engine and the namespaces are injected (unit tests pass in-memory fakes). Each
first runs the store's reconcile pass (pending.py) unless a daemon's keeper runs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping

from cni2cnm import netns
from cni2cnm.cni.env import CNIEnv
from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.cni.result import Result, parse_result
from cni2cnm.engine import (
    MIN_API,
    EngineAPI,
    EngineError,
    EngineFactory,
    EngineSettings,
    EngineUnavailable,
    TLSSettings,
    choose_engine,
)
from cni2cnm.plugin import preflight
from cni2cnm.plugin.attach import add_container
from cni2cnm.plugin.attach_proxy import add_proxy
from cni2cnm.plugin.check import check_attachment, fail_check, sandbox_gone
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.context import AddContext
from cni2cnm.plugin.detach import detach_record, end_if_sandbox_ended, finish_interrupted_add
from cni2cnm.plugin.errors import boundary, pending_del, status_error
from cni2cnm.plugin.gc import collect
from cni2cnm.plugin.pending import reconcile
from cni2cnm.plugin.request import endpoint_request
from cni2cnm.plugin.result import build_result
from cni2cnm.plugin.unrecorded import delete_unrecorded
from cni2cnm.store import ATTACHED, DELETING, SANDBOX_GONE, Store, StoreError

log = logging.getLogger("cni2cnm.plugin")


def engine_settings(conf: PluginConf) -> EngineSettings:
    """What the config says about its engine, for engine.choose_engine (which decides)."""
    tls = None
    if conf.tls is not None:
        tls = TLSSettings(ca=conf.tls.ca, cert=conf.tls.cert, key=conf.tls.key,
                          verify=conf.tls.verify)
    return EngineSettings(host=conf.dockerHost or "", timeout=conf.dockerTimeout, tls=tls)


class DockerPlugin:
    """The CNI plugin over a Docker engine."""

    config_model = PluginConf

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        engine_factory: EngineFactory = choose_engine,
        namespaces: netns.Namespaces = netns.SYSTEM,
        reconciles: bool = True,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.engine_factory = engine_factory
        self.namespaces = namespaces
        self.reconciles = reconciles  # False in the daemon: its keeper runs the pass

    @contextlib.contextmanager
    def engine(self, conf: PluginConf, recorded: str = "") -> Iterator[EngineAPI]:
        """The engine to ask (engine.choice): the config's dockerHost, else `recorded` (the
        engine the attachment was made on), else DOCKER_HOST, else the local socket."""
        engine = self.engine_factory(engine_settings(conf), self.environ, recorded)
        try:
            yield engine
        finally:
            engine.close()

    @contextlib.contextmanager
    def engines(self, conf: PluginConf) -> Iterator[Callable[[str], EngineAPI]]:
        """engine_of(recorded docker_host): one engine per recorded host, closed at the end."""
        with contextlib.ExitStack() as stack:
            engines: dict[str, EngineAPI] = {}

            def engine_of(recorded: str) -> EngineAPI:
                if recorded not in engines:
                    engines[recorded] = stack.enter_context(self.engine(conf, recorded))
                return engines[recorded]

            yield engine_of

    def reconcile(self, store: Store, conf: PluginConf) -> int:
        """The pending pass (pending.py) over this store; never fails the request."""
        try:
            with self.engines(conf) as engine_of:
                return reconcile(engine_of, self.namespaces, store)
        except (EngineError, StoreError, netns.NetnsError) as e:
            log.warning("pending pass over %s stopped: %s", conf.stateDir, e)
            return 1

    def _pass(self, store: Store, conf: PluginConf) -> None:
        if self.reconciles:
            self.reconcile(store, conf)

    # ==== ADD ================================================================

    def add(self, env: CNIEnv, conf: PluginConf) -> Result:
        prev = parse_result(conf.prevResult, conf.cniVersion) if conf.prevResult else None
        request = endpoint_request(env, conf)
        with preflight.pinned_netns(self.namespaces, env.netns) as target, boundary("ADD"), \
                Store(conf.stateDir) as store, store.lock(env.container_id), \
                self.engine(conf) as engine:
            self._pass(store, conf)
            finish_interrupted_add(engine, self.namespaces, store, env, conf)
            plan = preflight.plan_add(engine, self.namespaces, env, conf, request, target)
            ctx = AddContext(engine=engine, store=store, namespaces=self.namespaces,
                             environ=self.environ)
            if plan.container is None:
                attached = add_proxy(ctx, plan)
            else:
                attached = add_container(ctx, plan, plan.container)
        return build_result(prev, env, conf, attached)

    # ==== DEL ================================================================

    def delete(self, env: CNIEnv, conf: PluginConf) -> None:
        with boundary("DEL"):
            try:
                store = Store(conf.stateDir).open()
            except StoreError as e:
                log.error("DEL without the store (%s)", e)
                with self.engine(conf) as engine:
                    delete_unrecorded(engine, self.namespaces, env, conf, store_id_of(conf))
                return
            with store, store.lock(env.container_id):
                self._pass(store, conf)
                att = store.get(conf.name, env.container_id, env.ifname)
                if att is None:
                    log.info("DEL %s/%s: nothing recorded, nothing to do", env.container_id,
                             env.ifname)
                    return
                try:
                    with self.engine(conf, att.docker_host) as engine:
                        detach_record(engine, self.namespaces, store, att)
                except EngineUnavailable as e:
                    if att.state != DELETING:
                        store.mark(att, DELETING)
                    raise pending_del(e, conf.dockerHost or att.docker_host) from None

    # ==== CHECK ==============================================================

    def check(self, env: CNIEnv, conf: PluginConf) -> None:
        if not conf.prevResult:
            raise CNIError(Code.INVALID_CONFIG, "CHECK needs prevResult",
                           "the runtime must pass the ADD result as prevResult")
        prev = parse_result(conf.prevResult, conf.cniVersion)
        with boundary("CHECK"), Store(conf.stateDir) as store, store.lock(env.container_id):
            self._pass(store, conf)
            att = store.get(conf.name, env.container_id, env.ifname)
            if att is not None and att.state == SANDBOX_GONE:
                fail_check(sandbox_gone(att))
            if att is not None and att.state == DELETING:
                fail_check(f"a DEL of {env.container_id}/{env.ifname} is pending: cni2cnm "
                           "finishes it once the engine answers")
            if att is None or att.state != ATTACHED:
                fail_check(f"no attachment of {env.container_id}/{env.ifname} to network "
                           f"{conf.name} is recorded (was ADD run?)")
            with self.engine(conf, att.docker_host) as engine:
                if att.mode == "proxy" and end_if_sandbox_ended(engine, self.namespaces, store,
                                                                att):
                    fail_check(sandbox_gone(att))
                check_attachment(engine, self.namespaces, att, prev, env)

    # ==== GC =================================================================

    def gc(self, env: CNIEnv, conf: PluginConf) -> None:
        with boundary("GC"), Store(conf.stateDir) as store, self.engines(conf) as engine_of:
            reconcile(engine_of, self.namespaces, store, limit=-1)  # always, all of it
            collect(engine_of, self.namespaces, store, conf)

    # ==== STATUS =============================================================

    def status(self, env: CNIEnv, conf: PluginConf) -> None:
        try:
            store = Store(conf.stateDir).open()
        except StoreError as e:
            raise status_error(e) from None
        with store, boundary("STATUS"), self.engine(conf) as engine:  # an unusable address: 7
            try:
                api = engine.api_version()
                if api < MIN_API:
                    raise CNIError(Code.NOT_AVAILABLE, "Docker engine too old",
                                   f"{engine.shown} speaks API {api[0]}.{api[1]}; cni2cnm "
                                   f"needs {MIN_API[0]}.{MIN_API[1]} or newer (Docker 19.03+)")
                network = engine.network(conf.docker_network)
            except EngineError as e:
                raise status_error(e) from None
            if network is not None:
                return
            if engine_is_worker(engine):
                log.info("STATUS: %s not visible on this swarm worker before its first "
                         "attachment; ADD will tell whether it exists", conf.docker_network)
                return
            try:
                recorded = len(store.list(conf.name))
            except StoreError:
                recorded = 0
            base_url = engine.shown
        code = Code.LIMITED_CONNECTIVITY if recorded else Code.NOT_AVAILABLE
        raise CNIError(code, "Docker network not found",
                       f"network {conf.docker_network!r} does not exist on {base_url}"
                       + (f"; {recorded} recorded attachment(s) may have lost connectivity"
                          if recorded else "")
                       + "; create it with `docker network create`")


def engine_is_worker(engine: EngineAPI) -> bool:
    try:
        return engine.swarm_role() == "worker"
    except EngineError:
        return False


def store_id_of(conf: PluginConf) -> str:
    """The identity of the stateDir's store, readable even when its database is not."""
    return Store(conf.stateDir).identity()
