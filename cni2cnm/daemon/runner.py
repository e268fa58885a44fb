"""One request in the daemon: what the executable does in-process, with an injected engine.

`Runner(engine_factory)(env, data)` runs ``skel.dispatch`` with the request's environment and
stdin, a DockerPlugin that gets its engines from `engine_factory` (engines.pooled: warm
clients shared between requests), and the request's own log (logroute). It returns (exit
status, stdout, stderr) for the reply. Nothing process-wide is changed per request.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cni2cnm.daemon import logroute

if TYPE_CHECKING:
    from cni2cnm.cni.skel import Plugin
    from cni2cnm.daemon.keeper import Keeper
    from cni2cnm.engine import EngineFactory
    from cni2cnm.plugin.config import PluginConf


class Runner:
    def __init__(self, engine_factory: EngineFactory | None = None,
                 daemon_level: str | None = None, keeper: Keeper | None = None) -> None:
        self.engine_factory = engine_factory
        self.daemon_level = daemon_level  # CNI2CNM_LOG_LEVEL as the daemon was started
        self.keeper = keeper  # told each request's stateDir; runs the pending pass itself

    def __call__(self, env: dict[str, str], data: bytes) -> tuple[int, str, str]:
        from cni2cnm.cni import skel

        out = io.StringIO()
        keeper = self.keeper

        def on_config(conf: PluginConf) -> None:
            rlog.configure(conf.logFile, conf.logLevel)
            if keeper is not None:
                keeper.remember(conf, env)

        with logroute.request(env, self.daemon_level) as rlog:
            status = skel.dispatch(lambda: self.plugin(env), env, io.BytesIO(data), out,
                                   on_config=on_config)
        return status, out.getvalue(), rlog.stream.getvalue()

    def plugin(self, env: Mapping[str, str]) -> Plugin[PluginConf]:
        from cni2cnm.plugin.handlers import DockerPlugin

        reconciles = self.keeper is None
        if self.engine_factory is None:
            return DockerPlugin(environ=env, reconciles=reconciles)
        return DockerPlugin(environ=env, engine_factory=self.engine_factory,
                            reconciles=reconciles)
