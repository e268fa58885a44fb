"""A dockerd that speaks TLS only, for the TLS integration tests: its own CA, server and
client certificates (made with `cryptography`), an engine started by scripts/dockerd.sh with
`--tlsverify` on tcp://127.0.0.1:PORT inside its own network namespace, and a way to run
the plugin (and a `cni2cnm serve` daemon) inside that namespace, where 127.0.0.1 is the
engine's.

Everything lives under one temporary directory: the certificates, the engine's data, the
daemon's socket. `tls_engine()` removes it all (containers, engine, netns, files) even when
the test failed.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2ctest import SCRIPTS, Images
from daemonrun import Daemon, start_daemon, stopped_at_the_end
from machine import unmount_under
from pluginrun import CRI_DOCKERD_CNI_PATH, Outcome, plugin_executable

PORT = 2376
# What a corporate node (and this project's machines) hands every process: a CA bundle that
# does not contain the engine's CA, and a proxy that answers nothing. The config must win.
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOSTILE_ENV = {
    "REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE,
    "CURL_CA_BUNDLE": SYSTEM_BUNDLE,
    "SSL_CERT_FILE": SYSTEM_BUNDLE,
    "SSL_CERT_DIR": "/etc/ssl/certs",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


# ---- certificates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PKI:
    """Every file a test needs, all PEM unless said otherwise."""

    ca: Path                 # the CA the engine trusts and that signed its certificate
    server: Pair             # for IP 127.0.0.1 only (no DNS name): `localhost` is another host
    client: Pair             # clientAuth, signed by `ca`
    other_ca: Path           # a CA that signed nothing the engine presents
    expired_server: Pair     # signed by `ca`, for 127.0.0.1, expired yesterday
    expired_client: Pair     # signed by `ca`, clientAuth, expired yesterday
    not_pem: Path            # DER bytes of the CA certificate: a certificate, but not PEM
    not_a_cert: Path         # PEM, but a private key where a certificate is expected


def _name(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: Any, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(cert: Any, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(cn: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca: tuple[Any, Any], cn: str, *, server: bool, expired: bool = False) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        before, after = now - datetime.timedelta(days=3), now - datetime.timedelta(days=1)
    else:
        before, after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(before).not_valid_after(after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> PKI:
    """A CA, the engine's and the client's certificates, and the broken variants."""
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = _ca("c2c-test-ca")
    other = _ca("c2c-other-ca")

    def pair(name: str, cert_key: tuple[Any, Any]) -> Pair:
        p = Pair(directory / f"{name}-cert.pem", directory / f"{name}-key.pem")
        _write_cert(cert_key[0], p.cert)
        _write_key(cert_key[1], p.key)
        return p

    _write_cert(ca[0], directory / "ca.pem")
    _write_cert(other[0], directory / "other-ca.pem")
    not_pem = directory / "ca.der"
    not_pem.write_bytes(ca[0].public_bytes(serialization.Encoding.DER))
    server = pair("server", _leaf(ca, "c2c-engine", server=True))
    return PKI(
        ca=directory / "ca.pem",
        server=server,
        client=pair("client", _leaf(ca, "c2c-client", server=False)),
        other_ca=directory / "other-ca.pem",
        expired_server=pair("expired-server", _leaf(ca, "c2c-engine", server=True,
                                                    expired=True)),
        expired_client=pair("expired-client", _leaf(ca, "c2c-client", server=False,
                                                    expired=True)),
        not_pem=not_pem,
        not_a_cert=server.key,
    )


# ---- the engine ----------------------------------------------------------------------------


def _dockerd(action: str, directory: str, extra_args: str | None = None) -> str:
    env = dict(os.environ)
    if extra_args is not None:
        env["C2C_DOCKERD_ARGS"] = extra_args
    proc = subprocess.run(["bash", str(SCRIPTS / "dockerd.sh"), action, directory],
                          capture_output=True, text=True, timeout=180, check=False, env=env)
    assert proc.returncode == 0, f"dockerd.sh {action}: {proc.stderr[-3000:]}"
    return proc.stdout.strip()


@dataclass
class TLSEngine:
    dir: Path
    pki: PKI
    unix_host: str           # the test's own SDK client (no TLS on the unix socket)
    netns: str               # /run/netns/NAME of the engine
    client: Any
    images: Images = field(default_factory=Images)

    @property
    def tcp_host(self) -> str:
        return f"tcp://127.0.0.1:{PORT}"

    def tls_conf(self, **overrides: str | bool | None) -> dict[str, Any]:
        tls: dict[str, Any] = {"ca": str(self.pki.ca), "cert": str(self.pki.client.cert),
                               "key": str(self.pki.client.key), "verify": True}
        tls.update(overrides)
        return {k: v for k, v in tls.items() if v is not None}


def _tls_args(ca: Path, server: Pair) -> str:
    return (f"--tlsverify --tlscacert {ca} --tlscert {server.cert} --tlskey {server.key} "
            f"-H tcp://127.0.0.1:{PORT}")


@contextlib.contextmanager
def tls_engine(*, expired: bool = False, images: bool = True) -> Iterator[TLSEngine]:
    """A throwaway dockerd with --tlsverify on 127.0.0.1:PORT in its own netns, presenting
    the server certificate (`expired`: the expired one), with the local test images."""
    import docker

    d = Path(tempfile.mkdtemp(prefix="c2ctls.", dir="/tmp"))  # short: socket path limit
    client = None
    try:
        pki = make_pki(d / "pki")
        server = pki.expired_server if expired else pki.server
        host = _dockerd("start", str(d), _tls_args(pki.ca, server))
        netns = f"/run/netns/{(d / 'netns').read_text().strip()}"
        if images:
            subprocess.run(["bash", str(SCRIPTS / "images.sh"), host], check=True,
                           capture_output=True, timeout=300)
        client = docker.DockerClient(base_url=host, version="auto", timeout=60)
        yield TLSEngine(dir=d, pki=pki, unix_host=host, netns=netns, client=client)
    finally:
        if client is not None:
            client.close()
        with contextlib.suppress(AssertionError):
            _dockerd("stop", str(d))
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


# ---- the plugin and the daemon, inside the engine's netns ------------------------------------


def run_plugin(netns: str, command: str, conf: dict[str, Any], *, container_id: str = "",
               cni_netns: str = "", ifname: str = "eth0", prev: dict[str, Any] | None = None,
               environ: dict[str, str] | None = None, timeout: float = 120) -> Outcome:
    """The plugin file, run as a runtime runs it but inside `netns`, with HOSTILE_ENV and
    without DOCKER_HOST or CNI2CNM_DAEMON_SOCKET: the config alone says where the engine
    and the daemon are."""
    doc = dict(conf)
    if prev is not None:
        doc["prevResult"] = prev
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": cni_netns,
        "CNI_IFNAME": ifname if command not in ("GC", "STATUS") else "",
        "CNI_ARGS": "",
        "CNI_PATH": CRI_DOCKERD_CNI_PATH,
        # Use the daemon the config's daemonSocket names, never start one on demand.
        "CNI2CNM_DAEMON": "manual",
        **HOSTILE_ENV,
        **(environ or {}),
    }
    proc = subprocess.run(["nsenter", f"--net={netns}", plugin_executable()],
                          input=json.dumps(doc).encode(), env=env, capture_output=True,
                          timeout=timeout, check=False)
    return Outcome(command, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@contextlib.contextmanager
def netns_daemon(netns: str, directory: Path) -> Iterator[Daemon]:
    """`cni2cnm serve` inside the engine's netns, with HOSTILE_ENV in its own environment;
    stopped with SIGTERM (killed after a failure)."""
    directory.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CNI2CNM_LOG_LEVEL", "DOCKER_HOST", "CNI2CNM_DAEMON_SOCKET")}
    env.update(HOSTILE_ENV)
    daemon = start_daemon(directory, env=env, prefix=("nsenter", f"--net={netns}"))
    with stopped_at_the_end(daemon):
        yield daemon
