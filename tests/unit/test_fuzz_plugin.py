"""Property tests on the REAL plugin (DockerPlugin through the dispatcher): whatever values the
runtime puts in the CNI_* environment and in the plugin's own config keys, the answer is one
CNI document with a known code, never 999. The engine is always down here, so whatever gets
that far ends as code 11: the point is that nothing breaks before."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni2cnm import netns
from cni2cnm.cni import skel
from cni2cnm.engine import EngineUnavailable
from cni2cnm.plugin.handlers import DockerPlugin
from cni2cnm.testing.fake_netns import FakePinned

from .fakes import ALL_VERSIONS, KNOWN_CODES, one_document

FUZZ = settings(deadline=None, derandomize=True, database=None, max_examples=400,
                suppress_health_check=[HealthCheck.too_slow])
STATE = tempfile.mkdtemp(prefix="c2c-fuzz-")


def teardown_module() -> None:
    shutil.rmtree(STATE, ignore_errors=True)


class DownEngine:
    """Every call: the engine does not answer."""

    base_url = "unix:///nonexistent/docker.sock"

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        def down(*args: Any, **kw: Any) -> Any:
            raise EngineUnavailable(f"{name}: engine down")
        return down


class PodNamespaces(netns.Namespaces):
    def pin(self, path: str) -> netns.Pinned:
        return FakePinned(path, None, (1, hash(path) & 0xFFFF))

    def is_namespace(self, target: netns.Target) -> bool:
        return str(target).startswith("/run/netns/")

    def is_host(self, target: netns.Target) -> bool:
        return str(target) == "/run/netns/host"

    def identity(self, target: netns.Target) -> tuple[int, int] | None:
        return (1, hash(str(target)) & 0xFFFF)

    def open(self, path: netns.Target) -> Any:
        raise netns.NetnsError(f"cannot open {path} here")


# Text as os.environ hands it over: any Unicode, and undecodable bytes as lone surrogates.
env_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["eth0", "net1", "0123456789abcdef", "/run/netns/pod", "/run/netns/host",
                     "/proc/self/ns/mnt", "eth\udcff", "a\x01b", "x" * 16, ".", "..", "a/b",
                     "IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=../x", "IP=10.1.0.5;MAC=zz",
                     "MAC=02:42:0a:00:00:05\n"]),
).filter(lambda s: "\0" not in s)  # the kernel cannot put a NUL in an environment value



def mostly(good: str) -> st.SearchStrategy[str]:
    return st.one_of(st.just(good), st.just(good), st.just(good), env_text)


environments = st.fixed_dictionaries({
    "CNI_COMMAND": st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS"]),
    "CNI_CONTAINERID": mostly("0123456789abcdef"), "CNI_NETNS": mostly("/run/netns/pod"),
    "CNI_IFNAME": mostly("eth0"), "CNI_ARGS": mostly("IgnoreUnknown=1"),
})

junk = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                 st.lists(st.text(max_size=4), max_size=2),
                 st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2))
# Text keys that reach system calls (paths, URLs, image references): the nasty values.
nasty_text = st.sampled_from(["/a\0b", "/tmp/\ud800", "relative", "", "unix://\0",
                              "tcp://127.0.0.1:9", "\ud800"])
TEXT_KEYS = ["stateDir", "logFile", "dockerHost", "sandboxImage", "daemonSocket", "network"]
OTHER_KEYS = ["dockerTimeout", "tls", "logLevel", "mode", "detachNone", "aliases",
              "driverOpts"]
configs = st.builds(
    lambda version, name, text, other: {"cniVersion": version, "name": name,
                                        "type": "cni2cnm", "stateDir": STATE, **text, **other},
    st.sampled_from(ALL_VERSIONS),
    mostly("pods"),
    st.dictionaries(st.sampled_from(TEXT_KEYS), nasty_text | junk, max_size=2),
    st.dictionaries(st.sampled_from(OTHER_KEYS), junk, max_size=2),
)


@FUZZ
@given(environ=environments, conf=configs)
def test_the_real_plugin_answers_every_input_with_one_known_code(environ: dict[str, str],
                                                                   conf: dict[str, Any]) -> None:
    plugin = DockerPlugin(environ=environ, engine_factory=lambda *_: DownEngine(),
                          namespaces=PodNamespaces())
    out = io.StringIO()
    data = json.dumps(conf).encode("utf-8", "surrogatepass")
    rc = skel.dispatch(lambda: plugin, environ, io.BytesIO(data), out)
    if rc == 0:
        assert environ["CNI_COMMAND"] != "ADD" and out.getvalue() == ""
        return
    doc = one_document(out.getvalue())
    assert doc["code"] in KNOWN_CODES and doc["code"] != 999, doc
    assert isinstance(doc["msg"], str) and doc["msg"]
