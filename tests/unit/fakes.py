"""Shared test doubles for the protocol-layer tests: a fake plugin and a dispatch driver."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cni2cnm.cni import skel
from cni2cnm.cni.config import NetConf
from cni2cnm.cni.errors import CNIError
from cni2cnm.cni.result import Result

GOLDEN = Path(__file__).resolve().parent.parent / "golden"

ALL_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# Every error code the plugin may print (spec-reserved ones it uses, and its own 100+).
KNOWN_CODES = frozenset({1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 100, 101, 102, 103, 999})

NETNS = "/var/run/netns/cni-1234"

# The one dual-stack result every golden file is written from (see tests/golden/README.md).
DUAL_STACK: dict[str, Any] = {
    "interfaces": [
        {
            "name": "eth0",
            "mac": "02:42:0a:16:00:05",
            "mtu": 1450,
            "sandbox": NETNS,
            "socketPath": "/run/vhost-user/eth0.sock",
            "pciID": "0000:00:1f.6",
        }
    ],
    "ips": [
        {"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 0},
        {"address": "fd00:dead:beef::5/64", "gateway": "fd00:dead:beef::1", "interface": 0},
        {"address": "10.22.0.6/16", "interface": 0},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.22.0.1"},
        {
            "dst": "fd00:cafe::/48",
            "gw": "fd00:dead:beef::1",
            "mtu": 1400,
            "advmss": 1340,
            "priority": 100,
            "table": 100,
            "scope": 0,
        },
    ],
    "dns": {
        "nameservers": ["10.22.0.1", "fd00:dead:beef::1"],
        "domain": "cluster.local",
        "search": ["svc.cluster.local", "cluster.local"],
        "options": ["ndots:5", "edns0"],
    },
}


def dual_stack_result() -> Result:
    return Result.model_validate(DUAL_STACK)


def golden(version: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"result-{version}.json").read_text())


class FakePlugin:
    """Records calls; `add` returns `result`; a method listed in `fail` raises its exception."""

    config_model = NetConf  # no keys of its own

    def __init__(self, result: Result | None = None,
                 fail: Mapping[str, BaseException] | None = None) -> None:
        self.result = result if result is not None else dual_stack_result()
        self.fail = dict(fail or {})
        self.calls: list[tuple[str, Any, Any]] = []
        self.loaded = 0

    def load(self) -> FakePlugin:
        self.loaded += 1
        return self

    def _call(self, name: str, env: Any, conf: Any) -> None:
        self.calls.append((name, env, conf))
        if name in self.fail:
            raise self.fail[name]

    def add(self, env: Any, conf: Any) -> Result:
        self._call("add", env, conf)
        return self.result

    def delete(self, env: Any, conf: Any) -> None:
        self._call("delete", env, conf)

    def check(self, env: Any, conf: Any) -> None:
        self._call("check", env, conf)

    def gc(self, env: Any, conf: Any) -> None:
        self._call("gc", env, conf)

    def status(self, env: Any, conf: Any) -> None:
        self._call("status", env, conf)


def env_for(command: str, **overrides: str | None) -> dict[str, str]:
    """A complete, valid environment for `command`; an override of None removes the variable."""
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "0123456789abcdef",
        "CNI_NETNS": NETNS,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    if command in ("GC", "STATUS"):
        base.update(CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="")
    for k, v in overrides.items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = v
    return base


def netconf(version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"cniVersion": version, "name": "testnet", "type": "cni2cnm"}
    doc.update(extra)
    return doc


def stdin_of(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def dispatch(environ: Mapping[str, str], stdin: bytes | io.RawIOBase | Any,
             plugin: FakePlugin | None = None) -> tuple[int, str]:
    """Run skel.dispatch in-process; return (exit status, raw stdout text)."""
    plugin = plugin if plugin is not None else FakePlugin()
    stream = io.BytesIO(stdin) if isinstance(stdin, bytes) else stdin
    out = io.StringIO()
    rc = skel.dispatch(plugin.load, environ, stream, out)
    return rc, out.getvalue()


def one_document(text: str) -> dict[str, Any]:
    """stdout must hold exactly one JSON object (a trailing newline is allowed)."""
    assert text.strip(), "expected one JSON document on stdout, got nothing"
    doc = json.loads(text)  # raises on a second document or any trailing text
    assert isinstance(doc, dict), f"stdout is JSON but not an object: {text!r}"
    return doc


def assert_error(rc: int, text: str, code: int, cni_version: str | None = None) -> dict[str, Any]:
    """The spec's error object: one document, int code, string msg, non-zero exit."""
    assert rc != 0, f"exit status 0 for an error: {text!r}"
    doc = one_document(text)
    assert type(doc.get("code")) is int, f"code is not an int: {doc!r}"
    assert doc["code"] == code, f"expected code {code}, got {doc!r}"
    assert isinstance(doc.get("msg"), str) and doc["msg"], doc
    assert set(doc) <= {"cniVersion", "code", "msg", "details"}, doc
    if "details" in doc:
        assert isinstance(doc["details"], str), doc
    if cni_version is not None:
        assert doc.get("cniVersion") == cni_version, doc
    else:
        assert doc.get("cniVersion") in ALL_VERSIONS, doc
    return doc


def cni_error(code: int, msg: str = "failed", details: str = "") -> CNIError:
    return CNIError(code, msg, details)
