"""The config's TLS settings win over the environment (issue 12 item 3), without a network:
every request an Engine sends, the API-version negotiation included, is caught at the
transport and its TLS and proxy settings inspected."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
import urllib3.exceptions

from cni2cnm.engine import EngineConfigError, EngineUnavailable, TLSSettings
from cni2cnm.engine import client as eng

URL = "tcp://10.253.0.1:2376"
PEM = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSSettings:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text(PEM)
    return TLSSettings(ca=str(tmp_path / "ca.pem"), cert=str(tmp_path / "cert.pem"),
                       key=str(tmp_path / "key.pem"))


@pytest.fixture
def hostile_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A CA bundle and proxies in the environment, as runtimes on corporate nodes pass."""
    bundle = tmp_path / "system-bundle.pem"
    bundle.write_text(PEM)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(var, str(bundle))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return str(bundle)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every request that reaches the transport, answered as dockerd 20.10 would."""
    calls: list[dict[str, Any]] = []

    def send(self: Any, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        calls.append({"url": request.url, "verify": verify, "cert": cert,
                      "proxies": dict(proxies or {})})
        resp = requests.Response()
        resp.status_code = 200
        resp.headers["Content-Type"] = "application/json"
        resp._content = json.dumps({"ApiVersion": "1.41", "Version": "20.10.24"}).encode()
        resp.url = request.url or ""
        resp.request = request
        return resp

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return calls


def test_environment_never_replaces_the_configured_ca_or_adds_a_proxy(
        tls_files: TLSSettings, hostile_env: str, sent: list[dict[str, Any]]) -> None:
    engine = eng.Engine(URL, timeout=5, tls=tls_files)
    try:
        assert engine.version()["Version"] == "20.10.24"
        client = engine.client
        assert client.trust_env is False
        assert client.verify == tls_files.ca
        assert client.cert == (tls_files.cert, tls_files.key)
        # What requests would merge from the environment for a call: nothing.
        merged = client.merge_environment_settings("https://10.253.0.1:2376/version", {},
                                                   None, None, None)
        assert merged["verify"] == tls_files.ca and not merged["proxies"]
    finally:
        engine.close()
    # The negotiation (GET /version, before any versioned call) and the call itself.
    assert [c["url"].rsplit("/", 1)[-1] for c in sent] == ["version", "version"]
    assert "/v1.41/" in sent[1]["url"]
    for call in sent:
        assert call["verify"] == tls_files.ca, call
        assert call["verify"] != hostile_env
        assert call["cert"] == (tls_files.cert, tls_files.key), call
        assert not call["proxies"], call


def test_a_missing_tls_file_is_a_config_error_naming_it(tls_files: TLSSettings,
                                                        sent: list[dict[str, Any]]) -> None:
    settings = TLSSettings(ca=tls_files.ca + ".gone", cert=tls_files.cert, key=tls_files.key)
    engine = eng.Engine(URL, timeout=5, tls=settings)
    with pytest.raises(EngineConfigError, match=r"tls\.ca .*ca\.pem\.gone: No such file"):
        engine.version()
    assert sent == []  # refused before any connection


def _ssl_error(reason: str, verify_message: str | None = None) -> ssl.SSLError:
    if verify_message is not None:
        err: ssl.SSLError = ssl.SSLCertVerificationError(1, f"[SSL: {reason}] {verify_message}")
        err.verify_message = verify_message  # type: ignore[attr-defined]
    else:
        err = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    err.reason = reason  # type: ignore[misc]
    return err


@pytest.mark.parametrize("wrapped", [
    # requests' SSLError, as the handshake failures seen on dockerd 20.10 arrive
    lambda e: requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(
        None, "/version", urllib3.exceptions.SSLError(e))),
    # a TLS 1.3 alert read only with the answer: a ConnectionError, still a TLS failure
    lambda e: requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", e)),
], ids=["ssl-error", "alert-while-reading"])
def test_a_tls_failure_is_a_config_error_however_it_arrives(
        tls_files: TLSSettings, wrapped: Any) -> None:
    engine = eng.Engine(URL, timeout=5, tls=tls_files)
    err = wrapped(_ssl_error("CERTIFICATE_VERIFY_FAILED", "certificate has expired"))
    with pytest.raises(EngineConfigError) as caught, engine._translate("list containers"):
        raise err
    text = caught.value.explanation
    assert "certificate has expired" in text and f"tls.ca {tls_files.ca}" in text, text


@pytest.mark.parametrize(("reason", "cert", "expected"), [
    ("TLSV13_ALERT_CERTIFICATE_REQUIRED", False, "requires a client certificate"),
    ("SSLV3_ALERT_BAD_CERTIFICATE", True, "refused the client certificate tls.cert"),
    ("SSLV3_ALERT_CERTIFICATE_EXPIRED", True, "refused the client certificate tls.cert"),
    ("NO_CERTIFICATE_OR_CRL_FOUND", True, "holds no certificate"),
    ("KEY_VALUES_MISMATCH", True, "is not the key of tls.cert"),
])
def test_handshake_failures_name_the_check_and_the_file(
        tls_files: TLSSettings, reason: str, cert: bool, expected: str) -> None:
    settings = tls_files if cert else TLSSettings(ca=tls_files.ca)
    engine = eng.Engine(URL, timeout=5, tls=settings)
    with pytest.raises(EngineConfigError) as caught, engine._translate("connect"):
        raise requests.exceptions.SSLError(_ssl_error(reason))
    assert expected in caught.value.explanation, caught.value.explanation
    if cert:
        assert tls_files.cert in caught.value.explanation or \
            tls_files.ca in caught.value.explanation


def test_an_engine_that_does_not_answer_stays_unavailable(tls_files: TLSSettings) -> None:
    engine = eng.Engine(URL, timeout=5, tls=tls_files)
    with pytest.raises(EngineUnavailable), engine._translate("connect"):
        raise requests.exceptions.ConnectionError(ConnectionRefusedError(111, "refused"))
