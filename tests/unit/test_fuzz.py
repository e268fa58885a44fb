"""Property tests: whatever the runtime throws at the plugin, the answer is well formed.

Either exit 0 with nothing on stdout (DEL/CHECK/GC/STATUS) or exactly one result/VERSION
document (ADD/VERSION), or exit 1 with exactly one error object whose `code` is an int from the
known set and whose `msg` is a string.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from cni2cnm.cni.errors import CNIError
from cni2cnm.cni.result import parse_result

from .fakes import (
    ALL_VERSIONS,
    KNOWN_CODES,
    FakePlugin,
    dispatch,
    dual_stack_result,
    golden,
    one_document,
)

# The console script of the interpreter running the tests (a venv or a system install).
EXECUTABLE = str(Path(sys.executable).with_name("cni2cnm"))
VALID_COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
SILENT = ("DEL", "CHECK", "GC", "STATUS")

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- strategies ---------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=10,
)


def good_or_junk(*good: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(good), json_values)


versions = st.one_of(
    st.sampled_from(ALL_VERSIONS),
    st.sampled_from(ALL_VERSIONS),
    st.sampled_from(["0.5.0", "1.2.0", "", "1.0", "v1.0.0", "1.0.0 ", "0.4"]),
    st.text(max_size=8),
    json_values,
)
cidrs = st.sampled_from(["10.1.0.5/16", "fd00::5/64", "10.1.0.5", "300.1.1.1/8", "::/0",
                         "0.0.0.0/0", "x"])
ip_entries = st.fixed_dictionaries(
    {"address": cidrs | json_values},
    optional={"version": good_or_junk("4", "6", 4), "gateway": good_or_junk("10.1.0.1", "bad"),
              "interface": good_or_junk(0, 1, -1)},
)
route_entries = st.fixed_dictionaries(
    {"dst": cidrs | json_values},
    optional={"gw": good_or_junk("10.1.0.1", "fd00::1", "bad"), "mtu": good_or_junk(1400, -1),
              "scope": good_or_junk(0, 253), "table": good_or_junk(100, "main")},
)
result_like = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": versions,
        "interfaces": st.lists(st.fixed_dictionaries(
            {"name": good_or_junk("eth0")}, optional={"mac": json_values, "mtu": json_values}),
            max_size=2) | json_values,
        "ips": st.lists(ip_entries, max_size=3) | json_values,
        "routes": st.lists(route_entries, max_size=3) | json_values,
        "dns": st.fixed_dictionaries({}, optional={"nameservers": json_values}) | json_values,
        "ip4": st.fixed_dictionaries({"ip": cidrs | json_values},
                                     optional={"routes": st.lists(route_entries, max_size=2)
                                               | json_values}) | json_values,
        "ip6": st.fixed_dictionaries({"ip": cidrs}) | json_values,
    },
)
prev_results = st.one_of(
    st.sampled_from(ALL_VERSIONS).map(lambda v: dual_stack_result().render(v)),
    result_like,
    json_values,
)
attachments = st.lists(
    st.fixed_dictionaries({"containerID": good_or_junk("abc"), "ifname": good_or_junk("eth0")}),
    max_size=2,
) | json_values


def mostly(good: Any, junk: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(good), st.just(good), st.just(good), junk)


GOOD_EXTRAS: dict[str, Any] = {
    "args": {"cni": {"ips": ["10.1.0.5"]}},
    "runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80}]},
    "dns": {"nameservers": ["10.1.0.1"], "search": ["x"]},
    "capabilities": {"portMappings": True},
    "ipMasq": True,
    "ipam": {"type": "host-local"},
    "cni.dev/valid-attachments": [{"containerID": "abc", "ifname": "eth0"}],
    "cni.dev/attachments": [],
    "network": "bridge",
    "mode": "proxy",
    "stateDir": "/tmp/cni2cnm-never-used",
    "dockerTimeout": 5,
    "aliases": ["a"],
    "driverOpts": {"a": "b"},
    "detachNone": False,
    "logLevel": "error",
}
JUNK_EXTRAS: dict[str, st.SearchStrategy[Any]] = {
    "args": json_values,
    "runtimeConfig": st.sampled_from([{"ips": "x"}, {"portMappings": [{"hostPort": "a"}]}])
    | json_values,
    "dns": json_values,
    "capabilities": st.just({"ips": "yes"}) | json_values,
    "ipMasq": json_values,
    "cni.dev/valid-attachments": attachments,
    "cni.dev/attachments": attachments,
    "mode": st.just("bogus") | json_values,
    "stateDir": st.just("relative") | json_values,
    "dockerTimeout": st.sampled_from([0, -1, 601]) | json_values,
    "aliases": json_values,
    "driverOpts": json_values,
    "logLevel": st.just("loud") | json_values,
}
extras = st.one_of(
    st.just({}),
    st.fixed_dictionaries({}, optional={k: st.just(v) for k, v in GOOD_EXTRAS.items()}),
    st.sampled_from(sorted(JUNK_EXTRAS)).flatmap(
        lambda k: JUNK_EXTRAS[k].map(lambda v: {k: v})),
)


def assemble(base: dict[str, Any], drop: str | None, extra: dict[str, Any],
             prev: dict[str, Any], unknown: dict[str, Any]) -> dict[str, Any]:
    doc = {**unknown, **base, **extra, **prev}
    if drop:
        doc.pop(drop, None)
    return doc


near_valid_configs = st.builds(
    assemble,
    st.fixed_dictionaries({
        "cniVersion": st.one_of(st.sampled_from(ALL_VERSIONS), st.sampled_from(ALL_VERSIONS),
                                st.just("1.1.0"), versions),
        "name": mostly("net", st.just("") | json_values),
        "type": mostly("cni2cnm"),
    }),
    st.sampled_from([None, None, None, None, "cniVersion", "name", "type"]),
    extras,
    st.one_of(st.just({}), prev_results.map(lambda p: {"prevResult": p})),
    # Unknown keys; never `logFile`, which would make the test write files.
    st.just({}) | st.dictionaries(st.text(max_size=10).filter(lambda k: k != "logFile"),
                                  json_values, max_size=3),
)

valid_configs = st.builds(
    lambda version, extra, prev: {"cniVersion": version, "name": "net", "type": "cni2cnm",
                                  **extra, **prev},
    st.sampled_from(ALL_VERSIONS) | st.just("1.1.0"),
    st.fixed_dictionaries({}, optional={k: st.just(v) for k, v in GOOD_EXTRAS.items()}),
    st.just({}) | st.sampled_from(ALL_VERSIONS).map(
        lambda v: {"prevResult": dual_stack_result().render(v)}),
)

stdins = st.one_of(
    valid_configs.map(lambda d: json.dumps(d).encode()),
    near_valid_configs.map(lambda d: json.dumps(d).encode()),
    near_valid_configs.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=64),
)

cni_args = st.one_of(
    st.sampled_from(["", "IgnoreUnknown=1;K8S_POD_NAME=x", "FOO=1", "bad", "=x", "K8S_POD_NAME=",
                     "IgnoreUnknown=true;A=b;;", "IgnoreUnknown=0;A=b"]),
    st.lists(st.tuples(st.sampled_from(["IgnoreUnknown", "IP", "K8S_POD_NAME", "FOO", ""]),
                       st.sampled_from(["=", ""]), st.text(max_size=5)), max_size=3)
    .map(lambda kvs: ";".join(k + s + v for k, s, v in kvs)),
    st.text(max_size=20),
)
good_environments = st.fixed_dictionaries(
    {
        "CNI_COMMAND": st.sampled_from(VALID_COMMANDS),
        "CNI_CONTAINERID": st.sampled_from(["abc", "0123456789abcdef", "cnitool-0a1b2c3d4e"]),
        "CNI_IFNAME": st.sampled_from(["eth0", "net1", "a" * 15]),
        "CNI_NETNS": st.sampled_from(["/var/run/netns/x", "/proc/1/ns/net"]),
    },
    optional={
        "CNI_ARGS": st.sampled_from(["", "IgnoreUnknown=1;K8S_POD_NAME=x;FOO=1",
                                     "K8S_POD_NAMESPACE=default"]),
        "CNI_PATH": st.sampled_from(["/opt/cni/bin", "dummy", ""]),
    },
)
junk_environments = st.fixed_dictionaries(
    {"CNI_COMMAND": st.one_of(st.sampled_from(VALID_COMMANDS), st.sampled_from(VALID_COMMANDS),
                              st.sampled_from(["", "add", "INIT", "DELETE"]), st.text(max_size=6))},
    optional={
        "CNI_CONTAINERID": st.sampled_from(["abc", "0123456789abcdef", "-bad", "a b", ""])
        | st.text(max_size=20),
        "CNI_IFNAME": st.sampled_from(["eth0", "net1", "a" * 16, ".", "eth:0", ""])
        | st.text(max_size=17),
        "CNI_NETNS": st.sampled_from(["/var/run/netns/x", "/proc/1/ns/net", "dummy", ""])
        | st.text(max_size=10),
        "CNI_ARGS": cni_args,
        "CNI_PATH": st.sampled_from(["/opt/cni/bin", "dummy", ""]),
    },
)
plugin_failures = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.builds(lambda code, msg: CNIError(code, msg, "details"),
              st.sampled_from(sorted(KNOWN_CODES)), st.text(max_size=10)),
)

# ---- the property -------------------------------------------------------------------------


def check_outcome(rc: int, out: str, environ: dict[str, str], data: bytes) -> dict[str, Any]:
    command = environ.get("CNI_COMMAND")
    if rc == 0:
        assert command in VALID_COMMANDS
        if command in SILENT:
            assert out == "", f"{command} succeeded but printed {out!r}"
            return {}
        doc = one_document(out)
        if command == "VERSION":
            assert set(doc) == {"cniVersion", "supportedVersions"}
            assert isinstance(doc["cniVersion"], str)
            assert doc["supportedVersions"] == list(ALL_VERSIONS)
        else:
            requested = json.loads(data)["cniVersion"]
            assert doc["cniVersion"] == requested
            assert doc == golden(requested)
        return doc
    assert rc == 1, f"exit status {rc}"
    doc = one_document(out)
    assert type(doc.get("code")) is int, doc
    assert doc["code"] in KNOWN_CODES, doc
    assert isinstance(doc.get("msg"), str), doc
    assert doc.get("cniVersion") in ALL_VERSIONS, doc
    requested = config_version(data)
    if requested in ALL_VERSIONS:
        assert doc["cniVersion"] == requested, doc  # errors speak the config's version
    return doc


def config_version(data: bytes) -> Any:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc.get("cniVersion") if isinstance(doc, dict) else None


def make_plugin(command: str, failure: CNIError | None, parse_prev: bool = False) -> FakePlugin:
    plugin = FakePlugin()
    if failure is not None:
        method = "delete" if command == "DEL" else command.lower()
        plugin.fail[method] = failure
    if parse_prev:  # behave like the real plugin: read prevResult first
        orig = plugin._call

        def call(name: str, env: Any, conf: Any) -> None:
            if conf.prevResult:
                parse_result(conf.prevResult, conf.cniVersion)
            orig(name, env, conf)

        plugin._call = call  # type: ignore[method-assign]
    return plugin


def run_and_check(environ: dict[str, str], data: bytes, failure: CNIError | None) -> None:
    plugin = make_plugin(environ["CNI_COMMAND"], failure)
    rc, out = dispatch(environ, data, plugin)
    doc = check_outcome(rc, out, environ, data)
    event(f"{environ['CNI_COMMAND'] if rc == 0 else 'error'}: code {doc.get('code', 0)}")


@settings(FUZZ, max_examples=1000)
@given(environ=good_environments, data=stdins, failure=plugin_failures)
def test_dispatch_outcomes_are_well_formed(environ: dict[str, str], data: bytes,
                                           failure: CNIError | None) -> None:
    run_and_check(environ, data, failure)


@settings(FUZZ, max_examples=400)
@given(environ=junk_environments, data=stdins, failure=plugin_failures)
def test_dispatch_with_junk_environment(environ: dict[str, str], data: bytes,
                                        failure: CNIError | None) -> None:
    run_and_check(environ, data, failure)


@settings(FUZZ, max_examples=500)
@given(command=st.sampled_from(VALID_COMMANDS), data=st.binary(max_size=200),
       environ=junk_environments | good_environments)
def test_random_stdin_bytes(command: str, data: bytes, environ: dict[str, str]) -> None:
    environ = {**environ, "CNI_COMMAND": command}
    rc, out = dispatch(environ, data)
    check_outcome(rc, out, environ, data)


@settings(FUZZ, max_examples=600)
@given(
    command=st.sampled_from(["ADD", "DEL", "CHECK"]),
    version=st.sampled_from(ALL_VERSIONS),
    prev=prev_results,
)
def test_well_behaved_plugin_never_yields_internal_error(command: str, version: str,
                                                         prev: Any) -> None:
    # The fake plugin only returns results or raises CNIError; it parses prevResult the way the
    # real one does. Code 999 would then mean the protocol layer itself crashed.
    conf = {"cniVersion": version, "name": "net", "type": "cni2cnm", "prevResult": prev}
    environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/x",
               "CNI_IFNAME": "eth0"}
    data = json.dumps(conf).encode()
    rc, out = dispatch(environ, data, make_plugin(command, None, parse_prev=True))
    doc = check_outcome(rc, out, environ, data)
    assert doc.get("code") != 999, doc


@settings(FUZZ, max_examples=400)
@given(doc=prev_results, version=st.sampled_from(ALL_VERSIONS))
def test_parse_result_raises_only_cnierror_7(doc: Any, version: str) -> None:
    try:
        res = parse_result(doc, version)
    except CNIError as e:
        assert e.code == 7
    else:
        again = res.render(version)  # whatever parses can be printed and parsed again
        assert parse_result(again, version).render(version) == again


# ---- the real executable ------------------------------------------------------------------

env_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                          blacklist_characters="\x00"), max_size=20)
bad_envs = st.one_of(
    st.fixed_dictionaries({"CNI_IFNAME": st.sampled_from(["a" * 16, ".", "x/y", "e 0"])},
                          optional={"CNI_CONTAINERID": env_text, "CNI_NETNS": env_text}),
    st.fixed_dictionaries({"CNI_CONTAINERID": st.sampled_from(["-x", "a b", "a/b", ""])},
                          optional={"CNI_IFNAME": env_text, "CNI_NETNS": env_text}),
    st.fixed_dictionaries({"CNI_NETNS": env_text, "CNI_ARGS": st.sampled_from(["FOO=1", "bad"]),
                           "CNI_CONTAINERID": st.just("abc"), "CNI_IFNAME": st.just("eth0")}),
)
valid_env = {"CNI_CONTAINERID": "abc", "CNI_IFNAME": "eth0", "CNI_NETNS": "/run/netns/none"}


def is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, RecursionError):
        return False


@settings(FUZZ, max_examples=50)
@given(command=st.sampled_from(["VERSION", "ADD", "DEL"]), data=st.binary(max_size=100),
       env=bad_envs, good_env=st.booleans())
def test_real_executable(command: str, data: bytes, env: dict[str, str], good_env: bool) -> None:
    if command != "VERSION" and good_env:
        # A valid environment: the plugin must not run, so stdin must not be a JSON object.
        assume(not is_json_object(data))
        env = valid_env
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DOCKER_HOST": "unix:///nonexistent.sock",
        "CNI_PATH": "/nonexistent",
        "CNI2CNM_DAEMON": "off",  # never start a daemon on the node's default socket
        "CNI_COMMAND": command,
        **env,
    }
    assert os.access(EXECUTABLE, os.X_OK), f"{EXECUTABLE} is missing: pip install -e ."
    proc = subprocess.run([EXECUTABLE], input=data, env=environ, capture_output=True,
                          timeout=60, check=False)
    out = proc.stdout.decode()
    assert "Traceback" not in out
    doc = one_document(out)
    if command == "VERSION" and (not data.strip() or is_json_object(data)):
        assert proc.returncode == 0, (out, proc.stderr)
        assert doc["supportedVersions"] == list(ALL_VERSIONS)
    elif command == "VERSION":
        assert proc.returncode == 1, (out, proc.stderr)
        assert doc["code"] == 6, doc  # a VERSION request that is not a JSON object
    else:
        assert proc.returncode == 1, (out, proc.stderr)
        assert doc["code"] in (4, 6, 7, 1), doc  # failed before the plugin could run
        assert type(doc["code"]) is int and isinstance(doc["msg"], str)
