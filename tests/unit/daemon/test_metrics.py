"""cni2cnm.daemon.metrics: requests, fallbacks and engine calls counted and exported."""

from __future__ import annotations

from pathlib import Path

from cni2cnm.daemon import client, wire

from ..fakes import env_for
from .conftest import (
    Recorder,
    serving,
)


def test_metrics_count_requests_fallbacks_and_engine_calls(sockdir: Path) -> None:
    import urllib.request

    from cni2cnm.daemon.metrics import Metrics, MetricsServer

    metrics = Metrics(str(sockdir / client.FALLBACKS))
    client.count_fallback(str(sockdir / "d.sock"), "absent")
    client.count_fallback(str(sockdir / "d.sock"), "no_reply")
    path = sockdir / "d.sock"
    err = '{"cniVersion": "1.0.0", "code": 7, "msg": "m"}\n'
    with serving(path, Recorder(reply=(1, err, "")), observer=metrics):
        client.forward(env_for("ADD", **{wire.SOCKET_ENV: str(path)}), b"{}")
    metrics.engine_call("connect", None)
    metrics.engine_call("connect", "Conflict")
    exporter = MetricsServer("127.0.0.1:0", metrics, lambda: True)
    exporter.start()
    try:
        text = urllib.request.urlopen(f"http://{exporter.address}/metrics", timeout=10).read()
        health = urllib.request.urlopen(f"http://{exporter.address}/healthz", timeout=10)
    finally:
        exporter.stop()
    body = text.decode()
    assert 'cni2cnm_requests_total{code="7",command="ADD"} 1.0' in body
    assert 'cni2cnm_request_duration_seconds_count{command="ADD"} 1.0' in body
    assert "cni2cnm_requests_in_flight 0.0" in body
    assert 'cni2cnm_in_process_fallbacks_total{kind="absent"} 1.0' in body
    assert 'cni2cnm_in_process_fallbacks_total{kind="no_reply"} 1.0' in body
    assert 'cni2cnm_engine_calls_total{method="connect"} 2.0' in body
    assert 'cni2cnm_engine_errors_total{kind="Conflict",method="connect"} 1.0' in body
    assert health.status == 200

