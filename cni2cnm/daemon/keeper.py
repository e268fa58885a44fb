"""The daemon's keeper: finishes, without the runtime, what the runtime will not ask again.

Every request the daemon serves tells the keeper its stateDir (with the config's engine
settings); a thread then runs the plugin's reconcile pass (plugin/pending.py) over each of
them every INTERVAL seconds: pending DELs are finished as soon as their engine answers
again, and a proxy pod whose sandbox has ended (`docker stop`, dockerd restarted without
live-restore) loses the interface that still carries the address Docker freed. A pass with
nothing to do is one indexed query per stateDir; with proxy attachments it adds one
container listing per engine.

While a stateDir has such work (pending DELs or proxy attachments), `watching()` is true and
a daemon started on demand does not exit for idleness.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from cni2cnm.daemon import logroute

if TYPE_CHECKING:
    from cni2cnm import netns
    from cni2cnm.engine import EngineFactory
    from cni2cnm.plugin.config import PluginConf

log = logging.getLogger("cni2cnm-serve")

INTERVAL = 1.0  # seconds between passes
ENGINE_TIMEOUT = 3.0  # seconds per engine call in a pass at most: one that hangs (a dockerd
# shutting down) must not hold the pass that follows its restart; what it did not finish
# waits for the next pass


class Keeper:
    def __init__(self, engine_factory: EngineFactory | None = None,
                 interval: float = INTERVAL, namespaces: netns.Namespaces | None = None) -> None:
        self.engine_factory = engine_factory
        self.namespaces = namespaces  # None: the system's (tests pass fakes)
        self.interval = interval
        self._confs: dict[str, tuple[PluginConf, dict[str, str]]] = {}
        self._left: dict[str, int] = {}  # stateDir -> records still to watch after a pass
        self._seen: set[str] = set()  # stateDirs whose store a pass has found
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def remember(self, conf: object, environ: Mapping[str, str]) -> None:
        """A request's config (any NetConf; only the plugin's carries a stateDir)."""
        state_dir = getattr(conf, "stateDir", None)
        if not isinstance(state_dir, str):
            return
        engine_env = {"DOCKER_HOST": environ.get("DOCKER_HOST", "")}
        plugin_conf = cast("PluginConf", conf)
        plugin_conf = plugin_conf.model_copy(update={
            "dockerTimeout": min(plugin_conf.dockerTimeout, ENGINE_TIMEOUT)})
        with self._lock:
            new = state_dir not in self._confs
            self._confs[state_dir] = (plugin_conf, engine_env)
            self._left.setdefault(state_dir, 1)  # watch it until a pass says otherwise
        if new:
            log.info("keeping %s: pending DELs and ended proxy sandboxes are finished here",
                     state_dir)
        self._wake.set()

    def watching(self) -> bool:
        with self._lock:
            return any(self._left.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:  # the thread that keeps pods honest must not end
                log.exception("keeper: pass failed")

    def tick(self) -> None:
        """One pass over every stateDir served. A store not made yet (the first ADD is making
        it) waits for the next pass; one that existed and is gone is forgotten (never created
        again: opening a store makes its directory)."""
        from cni2cnm.store import DB_NAME

        with self._lock:
            confs = list(self._confs.items())
        for state_dir, (conf, environ) in confs:
            if not os.path.lexists(os.path.join(state_dir, DB_NAME)):
                if state_dir in self._seen:  # it had a store: removed since
                    with self._lock:
                        self._confs.pop(state_dir, None)
                        self._left.pop(state_dir, None)
                    self._seen.discard(state_dir)
                continue
            self._seen.add(state_dir)
            left = self._pass(conf, environ)
            log.debug("keeper: %s has %d record(s) to watch", state_dir, left)
            with self._lock:
                self._left[state_dir] = left

    def _pass(self, conf: PluginConf, environ: dict[str, str]) -> int:
        """The pass over one stateDir; the plugin's log lines go to the daemon's log."""
        level = "debug" if log.isEnabledFor(logging.DEBUG) else "info"
        with logroute.request({"CNI2CNM_LOG_LEVEL": level}, None) as rlog:
            left = self._reconcile(conf, environ)
        for line in rlog.stream.getvalue().splitlines():
            log.info("keeper: %s", line)
        return left

    def _reconcile(self, conf: PluginConf, environ: dict[str, str]) -> int:
        from cni2cnm.plugin.handlers import DockerPlugin
        from cni2cnm.store import ATTACHED, Store, StoreError

        plugin = DockerPlugin(environ=environ)
        if self.engine_factory is not None:
            plugin.engine_factory = self.engine_factory
        if self.namespaces is not None:
            plugin.namespaces = self.namespaces
        try:
            with Store(conf.stateDir) as store:
                left = plugin.reconcile(store, conf)
                return left + len(store.in_state(ATTACHED, mode="proxy"))
        except StoreError as e:
            log.warning("keeper: cannot open %s: %s", conf.stateDir, e)
            return 0
        except Exception:  # a bug must not end the thread that keeps pods honest
            log.exception("keeper: pass over %s failed", conf.stateDir)
            return 1
