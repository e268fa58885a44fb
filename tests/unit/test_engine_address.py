"""Engine addresses are checked before any connection and printed without userinfo (issue 19,
item 8)."""

from __future__ import annotations

import pytest

from cni2cnm.engine import Engine, EngineConfigError, check_address, redact


@pytest.mark.parametrize("url", [
    "unix:///var/run/docker.sock", "unix://", "", "tcp://127.0.0.1:2376", "tcp://[::1]:2376",
    "https://engine.example:2376", "http://10.0.0.1:2375", "10.0.0.1:2375",
    "ssh://core@node1", "ssh://node1:2222", "http+unix:///run/docker.sock",
])
def test_usable_addresses_pass(url: str) -> None:
    check_address(url)


@pytest.mark.parametrize(("url", "problem"), [
    ("tcp://[::1", "not a valid URL"),
    ("tcp://[::1]:99999", "not a valid URL (Port out of range"),
    ("tcp://host:port", "not a valid URL"),
    ("tcp://host", "no port"),
    ("tcp://", "no host"),
    ("ftp://host:21", "unsupported scheme 'ftp'"),
    ("tcp://host:2376?x=1", "query or fragment"),
    ("ssh://node1/path", "takes no path"),
    ("tcp://admin@host:2376", "a user in the address is refused"),
])
def test_unusable_addresses_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(EngineConfigError) as e:
        check_address(url)
    assert problem in e.value.explanation


@pytest.mark.parametrize("url", ["tcp://admin:hunter2@host:2376", "ssh://core:hunter2@node1",
                                 "admin:hunter2@host:2376"])
def test_passwords_are_refused_and_never_echoed(url: str) -> None:
    with pytest.raises(EngineConfigError) as e:
        Engine(url)
    assert "a password in the address is refused" in e.value.explanation
    assert "hunter2" not in e.value.explanation and "admin" not in e.value.explanation


@pytest.mark.parametrize(("url", "shown"), [
    ("tcp://admin:hunter2@host:2376", "tcp://***@host:2376"),
    ("ssh://core@node1", "ssh://***@node1"),
    ("a:b@host:1/x@y", "***@host:1/x@y"),
    ("unix:///run/x@y.sock", "unix:///run/x@y.sock"),
    ("tcp://h:1", "tcp://h:1"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_engine_prints_its_address_without_userinfo() -> None:
    assert Engine("ssh://core@node1").shown == "ssh://***@node1"
