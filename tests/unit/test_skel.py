"""skel.dispatch, the process boundary: every error code the protocol layer produces, VERSION,
and the silent successes. Every case checks the whole of stdout and the exit status."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from .fakes import (
    ALL_VERSIONS,
    FakePlugin,
    assert_error,
    cni_error,
    dispatch,
    env_for,
    golden,
    netconf,
    one_document,
    stdin_of,
)

COMMANDS_WITH_CONFIG = ("ADD", "DEL", "CHECK", "GC", "STATUS")


def valid_version_for(command: str) -> str:
    return "1.1.0" if command in ("GC", "STATUS", "CHECK") else "1.0.0"


class UnreadableStdin(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise OSError(5, "Input/output error")

    readall = read


# ---- 5: I/O failure -----------------------------------------------------------------------

@pytest.mark.parametrize("command", [*COMMANDS_WITH_CONFIG, "VERSION"])
def test_unreadable_stdin_is_code_5(command: str) -> None:
    plugin = FakePlugin()
    rc, out = dispatch(env_for(command), UnreadableStdin(), plugin)
    doc = assert_error(rc, out, 5)
    assert "Input/output error" in doc.get("details", "")
    assert plugin.loaded == 0


def test_closed_stdin_is_code_5() -> None:
    stream = io.BytesIO(b"{}")
    stream.close()
    rc, out = dispatch(env_for("ADD"), stream)
    assert_error(rc, out, 5)


# ---- 6: decode failure --------------------------------------------------------------------

@pytest.mark.parametrize(
    "data",
    [b"", b"   \n", b"not json", b"{", b'{"cniVersion": "1.0.0",}', b"\xff\xfe\x00garbage",
     b'{"cniVersion": "1.0.0"} {"cniVersion": "1.0.0"}', b"{'cniVersion': '1.0.0'}"],
    ids=["empty", "blank", "text", "truncated", "trailing-comma", "binary", "two-documents",
         "single-quotes"],
)
@pytest.mark.parametrize("command", COMMANDS_WITH_CONFIG)
def test_non_json_is_code_6(data: bytes, command: str) -> None:
    plugin = FakePlugin()
    rc, out = dispatch(env_for(command), data, plugin)
    assert_error(rc, out, 6)
    assert plugin.loaded == 0


@pytest.mark.parametrize(
    "doc", [[], [netconf()], "1.0.0", 42, 4.2, None, True],
    ids=["empty-list", "list", "string", "int", "float", "null", "bool"],
)
@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_json_that_is_not_an_object_is_code_6(doc: Any, command: str) -> None:
    rc, out = dispatch(env_for(command), stdin_of(doc))
    err = assert_error(rc, out, 6)
    assert "object" in err.get("details", "")


def test_version_with_non_object_request_is_code_6() -> None:
    rc, out = dispatch(env_for("VERSION"), b'["1.0.0"]')
    assert_error(rc, out, 6)


@pytest.mark.parametrize("command", ["ADD", "VERSION"])
def test_deeply_nested_json_is_code_6(command: str) -> None:
    # json.loads raises RecursionError (not ValueError) here: still a decode failure.
    rc, out = dispatch(env_for(command), b"[" * 100_000 + b"]" * 100_000)
    assert_error(rc, out, 6)


# ---- 7: invalid network config ------------------------------------------------------------

@pytest.mark.parametrize("field", ["name", "type"])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_missing_name_or_type_is_code_7(field: str, version: str) -> None:
    conf = netconf(version)
    del conf[field]
    rc, out = dispatch(env_for("DEL"), stdin_of(conf))
    err = assert_error(rc, out, 7, version)
    assert field in err["details"]


@pytest.mark.parametrize("field", ["name", "type"])
@pytest.mark.parametrize("value", ["", "  ", 5, None, ["x"]])
def test_bad_name_or_type_is_code_7(field: str, value: Any) -> None:
    rc, out = dispatch(env_for("ADD"), stdin_of(netconf("1.0.0", **{field: value})))
    err = assert_error(rc, out, 7, "1.0.0")
    assert field in err["details"]


@pytest.mark.parametrize("value", ["<missing>", None, 1, 1.0, ["1.0.0"], {"v": "1.0.0"}, True])
@pytest.mark.parametrize("command", COMMANDS_WITH_CONFIG)
def test_cniversion_missing_or_not_a_string_is_code_7(value: Any, command: str) -> None:
    conf = netconf()
    if value == "<missing>":
        del conf["cniVersion"]
    else:
        conf["cniVersion"] = value
    plugin = FakePlugin()
    rc, out = dispatch(env_for(command), stdin_of(conf), plugin)
    err = assert_error(rc, out, 7)
    assert "cniVersion" in err["details"]
    assert plugin.loaded == 0


# ---- 1: incompatible version --------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.5.0", "1.2.0", "", "1.0", "1.0.0-rc1", " 1.0.0", "v1.0.0"])
@pytest.mark.parametrize("command", COMMANDS_WITH_CONFIG)
def test_unsupported_cniversion_is_code_1(version: str, command: str) -> None:
    plugin = FakePlugin()
    rc, out = dispatch(env_for(command), stdin_of(netconf(version)), plugin)
    err = assert_error(rc, out, 1)
    assert f'"{version}"' in err["details"] or repr(version) in err["details"]
    for supported in ALL_VERSIONS:
        assert supported in err["details"]
    assert plugin.loaded == 0


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_check_before_040_is_code_1(version: str) -> None:
    plugin = FakePlugin()
    rc, out = dispatch(env_for("CHECK"), stdin_of(netconf(version)), plugin)
    err = assert_error(rc, out, 1, version)
    assert "CHECK" in err["msg"] + err.get("details", "")
    assert plugin.calls == []


@pytest.mark.parametrize("version", ["0.1.0", "0.3.1", "0.4.0", "1.0.0"])
@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_before_110_are_code_1(command: str, version: str) -> None:
    plugin = FakePlugin()
    rc, out = dispatch(env_for(command), stdin_of(netconf(version)), plugin)
    err = assert_error(rc, out, 1, version)
    assert command in err["msg"] + err.get("details", "")
    assert plugin.calls == []


# ---- 4: invalid environment ---------------------------------------------------------------

@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    ("command", "var"),
    [("ADD", "CNI_CONTAINERID"), ("ADD", "CNI_NETNS"), ("ADD", "CNI_IFNAME"),
     ("DEL", "CNI_CONTAINERID"), ("DEL", "CNI_IFNAME"), ("CHECK", "CNI_NETNS")],
)
def test_missing_env_is_code_4_in_the_config_version(command: str, var: str, version: str) -> None:
    plugin = FakePlugin()
    rc, out = dispatch(env_for(command, **{var: None}), stdin_of(netconf(version)), plugin)
    err = assert_error(rc, out, 4, version)
    assert var in err["details"]
    assert plugin.loaded == 0


@pytest.mark.parametrize("command", ["", "add", "INIT", "DELETE"])
def test_unknown_command_is_code_4(command: str) -> None:
    rc, out = dispatch(env_for("ADD", CNI_COMMAND=command), stdin_of(netconf("0.4.0")))
    err = assert_error(rc, out, 4, "0.4.0")
    assert "CNI_COMMAND" in err["details"]


def test_no_command_at_all_is_code_4() -> None:
    rc, out = dispatch({}, stdin_of(netconf("1.0.0")))
    assert_error(rc, out, 4, "1.0.0")


def test_bad_cni_args_is_code_4_naming_keys() -> None:
    rc, out = dispatch(env_for("ADD", CNI_ARGS="FOO=1;K8S_POD_NAME=x"), stdin_of(netconf("1.0.0")))
    err = assert_error(rc, out, 4, "1.0.0")
    assert "FOO" in err["details"]


# ---- errors raised by the plugin ----------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS_WITH_CONFIG)
def test_plugin_runtime_error_is_999_on_one_line(command: str) -> None:
    version = valid_version_for(command)
    method = "delete" if command == "DEL" else command.lower()
    plugin = FakePlugin(fail={method: RuntimeError("boom\nTraceback (most recent call last):\n")})
    rc, out = dispatch(env_for(command), stdin_of(netconf(version)), plugin)
    err = assert_error(rc, out, 999, version)
    assert out.count("\n") == 1 and out.endswith("\n")  # exactly one line on stdout
    assert "\n" not in err["msg"] and "\n" not in err.get("details", "")
    assert "Traceback" not in out
    assert "boom" in err["details"]


def test_add_returning_garbage_is_999() -> None:
    plugin = FakePlugin()
    plugin.result = None  # type: ignore[assignment]
    rc, out = dispatch(env_for("ADD"), stdin_of(netconf("1.0.0")), plugin)
    assert_error(rc, out, 999, "1.0.0")


@pytest.mark.parametrize("code", [2, 3, 7, 11, 50, 51, 100, 101, 102, 103])
def test_plugin_cni_error_is_printed_as_is(code: int) -> None:
    command = "STATUS" if code in (50, 51) else "ADD"
    method = command.lower()
    plugin = FakePlugin(fail={method: cni_error(code, "it failed", "because of X=1")})
    rc, out = dispatch(env_for(command), stdin_of(netconf("1.1.0")), plugin)
    err = assert_error(rc, out, code, "1.1.0")
    assert err["msg"] == "it failed" and err["details"] == "because of X=1"


def test_plugin_error_uses_an_old_config_version() -> None:
    plugin = FakePlugin(fail={"delete": cni_error(11, "busy")})
    rc, out = dispatch(env_for("DEL"), stdin_of(netconf("0.2.0")), plugin)
    err = assert_error(rc, out, 11, "0.2.0")
    assert "details" not in err  # empty details are left out


# ---- VERSION ------------------------------------------------------------------------------

LIBCNI_PROBE = {"CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy",
                "CNI_PATH": "dummy"}


@pytest.mark.parametrize("requested", [*ALL_VERSIONS, "0.5.0"])
@pytest.mark.parametrize("environ", [LIBCNI_PROBE, {"CNI_COMMAND": "VERSION"}],
                         ids=["libcni-probe", "bare"])
def test_version_echoes_request_and_lists_all_seven(
    requested: str, environ: dict[str, str]
) -> None:
    plugin = FakePlugin()
    rc, out = dispatch(environ, stdin_of({"cniVersion": requested}), plugin)
    assert rc == 0
    assert one_document(out) == {"cniVersion": requested, "supportedVersions": list(ALL_VERSIONS)}
    assert plugin.loaded == 0  # VERSION must stay cheap: no plugin, no Docker


def test_version_with_full_config_and_junk_env() -> None:
    environ = {"CNI_COMMAND": "VERSION", "CNI_CONTAINERID": "-bad-", "CNI_IFNAME": "a/b",
               "CNI_ARGS": "garbage"}
    rc, out = dispatch(environ, stdin_of(netconf("0.4.0")))
    assert rc == 0
    assert one_document(out) == {"cniVersion": "0.4.0", "supportedVersions": list(ALL_VERSIONS)}


def test_version_with_empty_stdin_answers_with_a_supported_version() -> None:
    rc, out = dispatch({"CNI_COMMAND": "VERSION"}, b"")
    assert rc == 0
    doc = one_document(out)
    assert doc["cniVersion"] in ALL_VERSIONS
    assert doc["supportedVersions"] == list(ALL_VERSIONS)


# ---- successes ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_prints_result_in_request_version(version: str) -> None:
    plugin = FakePlugin()
    conf = netconf(version, prevResult=None, network="dockernet")
    rc, out = dispatch(env_for("ADD", CNI_ARGS="IgnoreUnknown=1;FOO=bar"), stdin_of(conf), plugin)
    assert rc == 0
    assert out.endswith("\n") and out.count("\n") == 1
    assert one_document(out) == golden(version)
    [(name, env, nc)] = plugin.calls
    assert name == "add"
    assert (env.command, env.container_id, env.ifname) == ("ADD", "0123456789abcdef", "eth0")
    assert env.args == {"IgnoreUnknown": "1", "FOO": "bar"}
    assert nc.cniVersion == version and nc.model_extra["network"] == "dockernet"  # kept, not typed


@pytest.mark.parametrize(
    ("command", "version", "method"),
    [
        *[("DEL", v, "delete") for v in ALL_VERSIONS],
        *[("CHECK", v, "check") for v in ("0.4.0", "1.0.0", "1.1.0")],
        ("GC", "1.1.0", "gc"),
        ("STATUS", "1.1.0", "status"),
    ],
)
def test_silent_success_prints_nothing(command: str, version: str, method: str) -> None:
    plugin = FakePlugin()
    conf = netconf(version)
    if command in ("DEL", "CHECK"):
        conf["prevResult"] = golden(version)
    rc, out = dispatch(env_for(command), stdin_of(conf), plugin)
    assert (rc, out) == (0, "")
    [(name, env, nc)] = plugin.calls
    assert name == method and env.command == command and nc.cniVersion == version


def test_del_without_netns_and_prevresult_succeeds() -> None:
    plugin = FakePlugin()
    rc, out = dispatch(env_for("DEL", CNI_NETNS=""), stdin_of(netconf("1.0.0")), plugin)
    assert (rc, out) == (0, "")
    assert plugin.calls[0][1].netns == ""


def test_gc_passes_valid_attachments() -> None:
    plugin = FakePlugin()
    conf = netconf("1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "abc", "ifname": "eth0"}]})
    rc, out = dispatch({"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}, stdin_of(conf), plugin)
    assert (rc, out) == (0, "")
    assert plugin.calls[0][2].valid_attachment_keys() == {("abc", "eth0")}


def test_stdout_is_one_json_line_for_errors() -> None:
    rc, out = dispatch(env_for("ADD"), b"nope")
    assert rc == 1
    assert out.count("\n") == 1
    assert json.loads(out.splitlines()[0])["code"] == 6
