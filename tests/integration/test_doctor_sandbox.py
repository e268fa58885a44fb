"""`cni2cnm doctor` checks that the proxy sandboxes' image is on the engine (issue 15 item
3): an air-gapped engine without it would fail the first proxy-mode ADD at the pull."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from c2ctest import Images, Resources, unique_name
from pluginrun import plugin_executable

# doctor runs no plugin operation: the daemon-mode pass has nothing to add.
pytestmark = pytest.mark.own_modes


def doctor(docker_host: str, root: Path) -> dict[str, Any]:
    argv = [plugin_executable(), "doctor", "--bin-dir", str(root / "bin"), "--conf-dir",
            str(root / "net.d"), "--docker-host", docker_host, "--state-dir",
            str(root / "state"), "-o", "json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1), proc.stdout
    return report


def sandbox_checks(report: dict[str, Any]) -> list[dict[str, str]]:
    return [c for c in report["checks"] if c["check"] == "sandbox"]


def write_conflist(root: Path, name: str, network: str, **plugin: str) -> None:
    doc = {"cniVersion": "1.0.0", "name": name,
           "plugins": [{"type": "cni2cnm", "network": network, **plugin}]}
    (root / "net.d" / f"50-{name}.conflist").write_text(json.dumps(doc))


def test_doctor_warns_about_a_sandbox_image_the_engine_lacks(
        docker_host: str, docker_client: Any, images: Images, resources: Resources,
        net: Any) -> None:
    root = resources.tmpdir()
    subprocess.run([plugin_executable(), "install", "--bin-dir", str(root / "bin"),
                    "--conf-dir", str(root / "net.d"), "--state-dir", str(root / "state"),
                    "--network", net.name, "--docker-host", docker_host],
                   check=True, capture_output=True, timeout=120)
    absent = f"local/{unique_name('absent')}:1"
    write_conflist(root, "air-gapped", net.name, sandboxImage=absent)
    # Container mode never makes a sandbox: its image is not checked.
    write_conflist(root, "containers", net.name, sandboxImage=f"local/{unique_name('no')}:1",
                   mode="container")

    report = doctor(docker_host, root)
    by_image = {c["message"].split()[2]: c for c in sandbox_checks(report)}
    # The installed conflist sets no sandboxImage: the default, which scripts/images.sh
    # gives the test engine under its registry name.
    assert set(by_image) == {"registry.k8s.io/pause:3.10", absent}, report
    assert by_image["registry.k8s.io/pause:3.10"]["status"] == "OK"
    warn = by_image[absent]
    assert warn["status"] == "WARN", warn
    assert "pulls it" in warn["message"] and "no registry access" in warn["message"]
    assert f"docker pull {absent}" in warn["fix"] and "docker load" in warn["fix"]
    assert "sandboxImage" in warn["fix"]
    assert report["ok"] is True  # a WARN, not a FAIL

    # Once the engine has the image, the same check is OK.
    repo, tag = absent.rsplit(":", 1)
    docker_client.images.get(images.pause).tag(repo, tag)
    resources.add_cleanup(lambda: docker_client.images.remove(absent))
    again = {c["message"].split()[2]: c["status"] for c in sandbox_checks(doctor(docker_host,
                                                                                root))}
    assert again == {"registry.k8s.io/pause:3.10": "OK", absent: "OK"}


def test_doctor_checks_the_default_image_without_any_config(docker_host: str,
                                                            resources: Resources) -> None:
    root = resources.tmpdir()
    (root / "net.d").mkdir()
    [check] = sandbox_checks(doctor(docker_host, root))
    assert "registry.k8s.io/pause:3.10" in check["message"], check
