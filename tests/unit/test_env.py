"""CNI_* environment rules (SPEC.md section 2 "Parameters", libcni's validators)."""

from __future__ import annotations

import pytest

from cni2cnm.cni.env import parse_cni_args, parse_env
from cni2cnm.cni.errors import CNIError

from .fakes import env_for

REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
}
ALL_VARS = ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def env_error(environ: dict[str, str]) -> CNIError:
    with pytest.raises(CNIError) as ei:
        parse_env(environ)
    assert ei.value.code == 4, repr(ei.value)
    return ei.value


def text(err: CNIError) -> str:
    return f"{err.msg} {err.details}"


# ---- required variables -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("command", "var"), [(c, v) for c, vs in REQUIRED.items() for v in vs]
)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_missing_required_variable_is_code_4_naming_it(command: str, var: str, how: str) -> None:
    environ = env_for(command, **{var: None if how == "unset" else ""})
    err = env_error(environ)
    assert var in text(err)
    for other in set(REQUIRED[command]) - {var}:
        assert other not in err.details  # only the offending variable is blamed


@pytest.mark.parametrize("command", list(REQUIRED))
def test_all_missing_variables_are_named_together(command: str) -> None:
    err = env_error({"CNI_COMMAND": command})
    for var in REQUIRED[command]:
        assert var in err.details


def test_del_does_not_need_netns() -> None:
    env = parse_env(env_for("DEL", CNI_NETNS=None))
    assert env.command == "DEL" and env.netns == ""
    assert parse_env(env_for("DEL", CNI_NETNS="")).netns == ""


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"])
def test_gc_status_version_need_nothing_but_the_command(command: str) -> None:
    assert parse_env({"CNI_COMMAND": command}).command == command
    empty = {"CNI_COMMAND": command, "CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": ""}
    assert parse_env(empty).command == command


@pytest.mark.parametrize("command", list(REQUIRED))
def test_complete_environment_is_parsed(command: str) -> None:
    env = parse_env(env_for(command, CNI_PATH="/opt/cni/bin:/usr/lib/cni"))
    assert env.command == command
    assert env.container_id == "0123456789abcdef"
    assert env.ifname == "eth0"
    assert env.netns == "/var/run/netns/cni-1234"


def test_libcni_version_probe_is_accepted() -> None:
    probe = {"CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy",
             "CNI_PATH": "dummy"}
    assert parse_env(probe).command == "VERSION"


@pytest.mark.parametrize("command", ["", "add", "Add", "DELETE", "INIT", "VERSION ", "ADD\n"])
def test_unknown_command_is_code_4_naming_cni_command(command: str) -> None:
    err = env_error(env_for("ADD", CNI_COMMAND=command))
    assert "CNI_COMMAND" in text(err)


def test_unset_command_is_code_4() -> None:
    assert "CNI_COMMAND" in text(env_error(env_for("ADD", CNI_COMMAND=None)))


# ---- CNI_CONTAINERID ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "cid",
    [
        "-abc", "_abc", ".abc",            # must start with an alphanumeric
        "abc def", "abc/def", "abc:def",   # characters outside [a-zA-Z0-9_.-]
        "abc;rm", "abc$", "ab\tc", "ab\x00c",
        "é1", "\uff11abc",                 # non-ASCII letters/digits are not [a-zA-Z0-9]
    ],
)
@pytest.mark.parametrize("command", list(REQUIRED))
def test_invalid_container_id_is_code_4_naming_it(cid: str, command: str) -> None:
    err = env_error(env_for(command, CNI_CONTAINERID=cid))
    assert "CNI_CONTAINERID" in err.details


@pytest.mark.parametrize("cid", ["abc\n", "abc\n\n", "\nabc"])
def test_container_id_with_newline_is_rejected(cid: str) -> None:
    # The spec's pattern is anchored at both ends (Go's `$` is end of text); Python's `$` also
    # matches before a trailing newline, so "abc\n" must not slip through.
    err = env_error(env_for("ADD", CNI_CONTAINERID=cid))
    assert "CNI_CONTAINERID" in err.details


@pytest.mark.parametrize(
    "cid",
    ["a", "0", "A_b.c-d", "cnitool-0123456789abcdef0123", "f" * 64, "pod.ns_1-2"],
)
def test_valid_container_ids(cid: str) -> None:
    assert parse_env(env_for("ADD", CNI_CONTAINERID=cid)).container_id == cid


# ---- CNI_IFNAME ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "ifname",
    [
        "a" * 16,                       # longer than IFNAMSIZ-1
        ".", "..",
        "eth/0", "eth:0", "eth 0", "eth\t0", "eth0\n", "\u00a0eth0", "eth\u20030",
    ],
)
@pytest.mark.parametrize("command", list(REQUIRED))
def test_invalid_ifname_is_code_4_naming_it(ifname: str, command: str) -> None:
    err = env_error(env_for(command, CNI_IFNAME=ifname))
    assert "CNI_IFNAME" in err.details


@pytest.mark.parametrize("ifname", ["é" * 8, "eth0-ü" + "x" * 9, "网" * 6])
def test_ifname_length_is_counted_in_bytes(ifname: str) -> None:
    # IFNAMSIZ and libcni's ValidateInterfaceName (Go len()) count bytes, not characters:
    # each of these is <= 15 characters but > 15 bytes in UTF-8.
    assert len(ifname) <= 15 < len(ifname.encode())
    err = env_error(env_for("ADD", CNI_IFNAME=ifname))
    assert "CNI_IFNAME" in err.details


@pytest.mark.parametrize("ifname", ["eth0", "a" * 15, "net1", "a.b", "...", "-", "veth_1-x"])
def test_valid_ifnames(ifname: str) -> None:
    assert parse_env(env_for("ADD", CNI_IFNAME=ifname)).ifname == ifname


def test_several_problems_are_reported_together() -> None:
    err = env_error(env_for("ADD", CNI_NETNS=None, CNI_CONTAINERID="-x", CNI_IFNAME="a/b"))
    for var in ("CNI_NETNS", "CNI_CONTAINERID", "CNI_IFNAME"):
        assert var in err.details


# ---- CNI_ARGS -----------------------------------------------------------------------------

def test_cni_args_empty() -> None:
    assert parse_cni_args("") == {}
    assert parse_env(env_for("ADD")).args == {}
    assert parse_env(env_for("ADD", CNI_ARGS="")).args == {}


def test_cni_args_pairs() -> None:
    raw = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.1.2.3"
    assert parse_cni_args(raw) == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": "default",
        "K8S_POD_NAME": "web-0",
        "IP": "10.1.2.3",
    }


def test_cni_args_empty_value_is_kept() -> None:
    assert parse_cni_args("K8S_POD_NAME=") == {"K8S_POD_NAME": ""}


def test_cni_args_reach_the_env() -> None:
    env = parse_env(env_for("DEL", CNI_ARGS="K8S_POD_NAME=web-0"))
    assert env.args == {"K8S_POD_NAME": "web-0"}


@pytest.mark.parametrize("raw", ["FOO", "K8S_POD_NAME=a;BAR", "=value", "IgnoreUnknown=1;=x"])
def test_malformed_pair_is_code_4_naming_cni_args(raw: str) -> None:
    with pytest.raises(CNIError) as ei:
        parse_cni_args(raw)
    assert ei.value.code == 4
    assert "CNI_ARGS" in text(ei.value)
    err = env_error(env_for("ADD", CNI_ARGS=raw))
    assert "CNI_ARGS" in text(err)


def test_unknown_keys_are_code_4_naming_the_keys() -> None:
    with pytest.raises(CNIError) as ei:
        parse_cni_args("K8S_POD_NAME=a;FOO=1;BAR=2")
    assert ei.value.code == 4
    assert "CNI_ARGS" in text(ei.value)
    assert "FOO" in ei.value.details and "BAR" in ei.value.details
    assert "K8S_POD_NAME" not in ei.value.details  # a known key is not blamed


@pytest.mark.parametrize("flag", ["1", "true", "True", "TRUE"])
def test_ignore_unknown_accepts_unknown_keys(flag: str) -> None:
    args = parse_cni_args(f"IgnoreUnknown={flag};FOO=1;K8S_POD_NAME=a")
    assert args["FOO"] == "1" and args["K8S_POD_NAME"] == "a"


def test_ignore_unknown_position_does_not_matter() -> None:
    assert parse_cni_args("FOO=1;IgnoreUnknown=1")["FOO"] == "1"


@pytest.mark.parametrize("flag", ["0", "false", "", "yes"])
def test_ignore_unknown_false_still_rejects(flag: str) -> None:
    with pytest.raises(CNIError) as ei:
        parse_cni_args(f"IgnoreUnknown={flag};FOO=1")
    assert ei.value.code == 4 and "FOO" in ei.value.details
