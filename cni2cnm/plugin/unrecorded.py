"""DEL when the store cannot be read: act only on evidence that the attachment is ours.

Without a record nothing says which endpoint ADD made, and a wrong guess detaches someone
else's container. Evidence accepted:
- container mode: the Docker container named by CNI_CONTAINERID (or the pod's infra
  container ID) runs in CNI_NETNS itself (same kernel namespace), so the runtime that
  created that namespace is the one asking; its endpoint on the configured network goes,
  unless the container was created on that network (`docker run --network`: that endpoint
  is Docker's own, never cni2cnm's). A container found only by its namespace (an ID no
  Docker container has, as cnitool's) is never detached: nothing names it;
- proxy mode: a sandbox container whose labels name this network, container ID and
  interface and this store's identity (`store-id`, which survives the database).
Anything else is left alone and logged; DEL still exits 0, as the spec asks.
"""

from __future__ import annotations

import contextlib
import logging

from cni2cnm import netns
from cni2cnm.cni.env import CNIEnv
from cni2cnm.engine import Container, EngineAPI, NotConnected, NotFound
from cni2cnm.plugin import proxy
from cni2cnm.plugin.config import PluginConf
from cni2cnm.plugin.preflight import container_refs

log = logging.getLogger("cni2cnm.plugin")


def named_container(engine: EngineAPI, env: CNIEnv) -> Container | None:
    """The Docker container the request names (never one found by its namespace alone)."""
    for ref in container_refs(env):
        container = engine.container(ref)
        if container is not None:
            return container
    return None


def delete_unrecorded(engine: EngineAPI, namespaces: netns.Namespaces, env: CNIEnv,
                      conf: PluginConf, store_id: str) -> None:
    for sandbox_id, cid, ifname in proxy.labelled_sandboxes(engine, conf.name, store_id):
        if (cid, ifname) == (env.container_id, env.ifname):
            log.warning("DEL without the store: removing sandbox %s of %s/%s (its labels name "
                        "this store)", sandbox_id[:12], cid, ifname)
            engine.remove_container(sandbox_id)
    if not env.netns or not namespaces.is_namespace(env.netns):
        log.warning("DEL without the store: CNI_NETNS %r cannot prove which container is "
                    "ours; nothing detached", env.netns)
        return
    container = named_container(engine, env)
    if container is None or not container.running or \
            namespaces.identity(netns.of_pid(container.pid)) != namespaces.identity(env.netns):
        log.warning("DEL without the store: no running Docker container named %s runs in %s; "
                    "nothing detached", " or ".join(container_refs(env)) or "by the request",
                    env.netns)
        return
    if container.network_mode == conf.docker_network:
        log.warning("DEL without the store: %s was created on %s (network mode), so Docker "
                    "made that endpoint, not cni2cnm; nothing detached", container.name,
                    conf.docker_network)
        return
    log.warning("DEL without the store: detaching %s (%s), which runs in CNI_NETNS, from %s",
                container.name, container.short_id, conf.docker_network)
    with contextlib.suppress(NotConnected, NotFound):
        engine.disconnect(container.id, conf.docker_network, force=True)
