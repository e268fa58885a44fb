"""TLS engines end to end: a dockerd with --tlsverify on 127.0.0.1 inside its own network
namespace, certificates made by the test, and the plugin (in-process, and through a
`cni2cnm serve` daemon named by the config's `daemonSocket`) run inside that namespace with
the machine's CA-bundle variables and an HTTPS proxy that answers nothing in its
environment. The config's `tls` must win over all of them; every broken TLS setting is one
CNI error naming the file or the check that failed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from c2ctest import Resources, pause_container, require
from daemonrun import Daemon
from pluginrun import Outcome, endpoint, forwarded, proc_netns, records
from tlsengine import (
    HOSTILE_ENV,
    PKI,
    SYSTEM_BUNDLE,
    TLSEngine,
    netns_daemon,
    run_plugin,
    tls_engine,
)

# These tests run the plugin in-process and through their own daemon themselves.
pytestmark = pytest.mark.own_modes

MODES = ["in-process", "daemon"]


def _require_tools() -> None:
    require("dockerd", "nsenter", "ip",
            root="TLS engine tests need root (network namespaces, dockerd)")


@pytest.fixture(scope="module")
def teng() -> Iterator[TLSEngine]:
    _require_tools()
    with tls_engine() as engine:
        yield engine


@pytest.fixture(scope="module")
def tdaemon(teng: TLSEngine) -> Iterator[Daemon]:
    directory = Path(tempfile.mkdtemp(prefix="c2ctd-"))
    try:
        with netns_daemon(teng.netns, directory) as daemon:
            yield daemon
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tres(teng: TLSEngine) -> Iterator[Resources]:
    with Resources(teng.client) as res:
        yield res


class Runner:
    """The plugin as a runtime runs it, against the TLS engine, in one mode."""

    def __init__(self, teng: TLSEngine, res: Resources, network: str, mode: str,
                 daemon: Daemon | None) -> None:
        self.teng, self.network, self.mode, self.daemon = teng, network, mode, daemon
        self.state_dir = str(res.tmpdir() / "state")

    def conf(self, **overrides: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": "1.1.0", "name": self.network, "type": "cni2cnm",
            "stateDir": self.state_dir, "dockerHost": self.teng.tcp_host,
            "tls": self.teng.tls_conf(),
            "daemonSocket": str(self.daemon.path) if self.daemon else "",
        }
        conf.update(overrides)
        return {k: v for k, v in conf.items() if v is not None}

    def __call__(self, command: str, conf: dict[str, Any] | None = None, **kw: Any) -> Outcome:
        out = run_plugin(self.teng.netns, command, conf or self.conf(), **kw)
        if self.daemon is not None:
            forwarded(out)
            assert self.daemon.proc.poll() is None, self.daemon.log_text()[-2000:]
        return out

    def records(self) -> list[Any]:
        return records(self.state_dir, self.network)


@pytest.fixture(params=MODES)
def run(request: pytest.FixtureRequest, teng: TLSEngine, tres: Resources) -> Runner:
    daemon = request.getfixturevalue("tdaemon") if request.param == "daemon" else None
    net = tres.network()
    return Runner(teng, tres, net.name, request.param, daemon)


def test_environment_is_hostile() -> None:
    """The premise of the tests below: the bundle the environment names does not trust the
    test CA, and the proxy it names answers nothing."""
    assert HOSTILE_ENV["REQUESTS_CA_BUNDLE"] == SYSTEM_BUNDLE
    assert "c2c-test-ca" not in Path(SYSTEM_BUNDLE).read_text(errors="replace")
    assert HOSTILE_ENV["HTTPS_PROXY"] == "http://127.0.0.1:9"


def test_add_check_status_gc_del_over_tls(run: Runner, tres: Resources,
                                          teng: TLSEngine) -> None:
    pod = pause_container(tres, teng.images)
    netns = proc_netns(pod)
    ids = {"container_id": pod.id, "cni_netns": netns}

    result = run("ADD", **ids).ok().doc
    ep = endpoint(pod, run.network)
    assert ep is not None and ep["EndpointID"]
    assert result["ips"][0]["address"] == f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
    assert [r.state for r in run.records()] == ["attached"]

    run("CHECK", prev=result, **ids).silent()
    run("STATUS").silent()
    keep = run.conf(**{"cni.dev/valid-attachments": [{"containerID": pod.id,
                                                      "ifname": "eth0"}]})
    run("GC", keep).silent()
    assert endpoint(pod, run.network) is not None, "GC removed a valid attachment"

    run("DEL", prev=result, **ids).silent()
    assert endpoint(pod, run.network) is None
    assert run.records() == []

    # GC over TLS removes what the runtime no longer lists (a fresh pod: Docker 20.10
    # never gives a reconnected container eth0 again).
    pod2 = pause_container(tres, teng.images)
    run("ADD", container_id=pod2.id, cni_netns=proc_netns(pod2)).ok()
    assert endpoint(pod2, run.network) is not None
    run("GC", run.conf(**{"cni.dev/valid-attachments": []})).silent()
    assert endpoint(pod2, run.network) is None
    assert run.records() == []


def test_the_environment_bundle_alone_does_not_trust_the_engine(run: Runner, tres: Resources,
                                                                teng: TLSEngine) -> None:
    """The control for the test above: with the environment's bundle as tls.ca the
    handshake fails, so the ADD that succeeded used the config's CA and nothing else."""
    pod = pause_container(tres, teng.images)
    conf = run.conf(tls=teng.tls_conf(ca=SYSTEM_BUNDLE))
    doc = run("ADD", conf, container_id=pod.id, cni_netns=proc_netns(pod)).error(7)
    assert SYSTEM_BUNDLE in doc["details"] and "failed verification" in doc["details"]


def _cases(pki: PKI, tmp: Path) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """name -> (config overrides, fragments the error's details must contain)."""
    def tls(**kw: str | None) -> dict[str, Any]:
        base: dict[str, Any] = {"ca": str(pki.ca), "cert": str(pki.client.cert),
                                "key": str(pki.client.key), "verify": True}
        base.update(kw)
        return {"tls": {k: v for k, v in base.items() if v is not None}}

    missing = tmp / "no-such-ca.pem"
    return {
        "wrong-ca": (tls(ca=str(pki.other_ca)),
                     ["unable to get local issuer certificate", f"tls.ca {pki.other_ca}"]),
        "no-client-certificate": (tls(cert=None, key=None),
                                  ["requires a client certificate", "tls.cert and tls.key"]),
        "certificate-for-another-host": (
            {"dockerHost": "tcp://localhost:2376"},
            ["Hostname mismatch, certificate is not valid for 'localhost'", f"tls.ca {pki.ca}"]),
        "expired-client-certificate": (
            tls(cert=str(pki.expired_client.cert), key=str(pki.expired_client.key)),
            ["refused the client certificate", f"tls.cert {pki.expired_client.cert}",
             "expired"]),
        "ca-file-missing": (tls(ca=str(missing)),
                            [f"tls.ca {missing}", "No such file or directory"]),
        "ca-not-pem": (tls(ca=str(pki.not_pem)), [f"tls.ca {pki.not_pem}", "not a PEM file"]),
        "cert-not-pem": (tls(cert=str(pki.not_pem)),
                         [f"tls.cert {pki.not_pem}", "not a PEM file"]),
        "ca-without-certificate": (tls(ca=str(pki.not_a_cert)),
                                   [f"tls.ca {pki.not_a_cert}", "holds no certificate"]),
        "key-of-another-certificate": (
            tls(key=str(pki.expired_client.key)),
            [f"tls.key {pki.expired_client.key}", f"is not the key of tls.cert "
             f"{pki.client.cert}"]),
        "no-tls-for-a-tls-engine": ({"tls": None}, ["speaks TLS only", "tls"]),
    }


CASES = ["wrong-ca", "no-client-certificate", "certificate-for-another-host",
         "expired-client-certificate", "ca-file-missing", "ca-not-pem", "cert-not-pem",
         "ca-without-certificate", "key-of-another-certificate", "no-tls-for-a-tls-engine"]


@pytest.mark.parametrize("case", CASES)
def test_tls_failure_is_a_config_error(case: str, run: Runner, tres: Resources,
                                       teng: TLSEngine) -> None:
    overrides, fragments = _cases(teng.pki, tres.tmpdir())[case]
    pod = pause_container(tres, teng.images)
    out = run("ADD", run.conf(**overrides), container_id=pod.id, cni_netns=proc_netns(pod))
    doc = out.error(7)
    assert doc["msg"] == "cannot use the configured engine connection", doc
    for fragment in fragments:
        assert fragment in doc["details"], f"{fragment!r} not in {doc['details']!r}"
    assert "Traceback" not in out.stderr
    # Nothing changed: no record, the pod is still only on `none`.
    assert run.records() == []
    pod.reload()
    assert list(pod.attrs["NetworkSettings"]["Networks"]) == ["none"]
    # STATUS says the engine is not usable (code 50) and why.
    status = run("STATUS", run.conf(**overrides)).error(50)
    assert fragments[0] in status["details"], status
    assert "fix the config's tls settings" in status["details"], status


def test_expired_server_certificate() -> None:
    """An engine presenting an expired certificate (signed by the right CA): code 7 saying
    the engine's certificate has expired. In-process only: no pod is needed, the handshake
    fails at the first engine call."""
    _require_tools()
    with tls_engine(expired=True, images=False) as eng, Resources(eng.client) as res:
        ns = res.netns()
        state = res.tmpdir() / "state"
        conf = {"cniVersion": "1.1.0", "name": "c2ct-expired", "type": "cni2cnm",
                "stateDir": str(state), "dockerHost": eng.tcp_host,
                "tls": eng.tls_conf(), "daemonSocket": ""}
        out = run_plugin(eng.netns, "ADD", conf, container_id="c2ct-expired",
                         cni_netns=ns)
        doc = out.error(7)
        assert "certificate has expired" in doc["details"], doc
        assert f"tls.ca {eng.pki.ca}" in doc["details"], doc
        status = run_plugin(eng.netns, "STATUS", conf).error(50)
        assert "certificate has expired" in status["details"], status
