"""Test doubles that behave like the real thing, importable by any test (host-local's
backend/testing/fake_store.go is the model):

    fake_engine.py  FakeEngine: engine.EngineAPI in memory, like dockerd 20.10 / 28 / 29.3
    fake_state.py   its networks (with IPAM), containers and endpoints
    fake_views.py   its state as the typed models, and the interfaces a connect makes
    fake_netns.py   FakeNamespaces: netns.Namespaces in memory (links, addresses, routes)
    cli_runner.py   click's CliRunner with stderr apart from stdout, on click 8.1 and later
"""

from cni2cnm.testing.fake_engine import FakeEngine
from cni2cnm.testing.fake_netns import FakeNamespace, FakeNamespaces

__all__ = ["FakeEngine", "FakeNamespace", "FakeNamespaces"]
