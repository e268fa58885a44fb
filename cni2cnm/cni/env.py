"""The CNI_* environment: which variables each command needs, and their rules. CNI_PATH is
accepted and not read: this plugin never executes delegated plugins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cni2cnm.cni.errors import CNIError, Code
from cni2cnm.cni.names import encodable, name_problem

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

# SPEC.md: the variables each operation requires (CNI_PATH is not listed: this
# plugin never executes delegated plugins, so it has no use for it).
REQUIRED: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}

IFNAME_MAX = 15  # IFNAMSIZ - 1

# CNI_ARGS keys this plugin reads. Anything else needs IgnoreUnknown.
KNOWN_ARGS = frozenset(
    {
        "IgnoreUnknown",
        "IP",
        "MAC",
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
    }
)


@dataclass(frozen=True)
class CNIEnv:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)


def validate_container_id(value: str) -> str | None:
    """Return why the value is not a valid CNI_CONTAINERID, or None."""
    return name_problem(value)


def validate_ifname(value: str) -> str | None:
    """Return why the value is not a valid CNI_IFNAME, or None."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        return "is not valid UTF-8"
    if size > IFNAME_MAX:
        return f"is {size} bytes long, at most {IFNAME_MAX} are allowed"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    if any(c == "/" or c == ":" or c.isspace() for c in value):
        return "must not contain '/', ':' or whitespace"
    if not value.isprintable():
        return "must not contain control characters"
    return None


def parse_cni_args(raw: str) -> dict[str, str]:
    """Parse CNI_ARGS (`K=V;K=V`). Unknown keys are an error unless IgnoreUnknown is true."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for pair in raw.split(";"):
        if not pair:
            continue
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise CNIError(
                Code.INVALID_ENVIRONMENT,
                "invalid CNI_ARGS",
                f"CNI_ARGS: {pair!r} is not KEY=VALUE (expected 'K=V;K=V')",
            )
        out[k] = v
    ignore = out.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(k for k in out if k not in KNOWN_ARGS)
    if unknown and not ignore:
        raise CNIError(
            Code.INVALID_ENVIRONMENT,
            "invalid CNI_ARGS",
            f"CNI_ARGS: unknown keys {unknown}; pass IgnoreUnknown=1 to ignore them",
        )
    return out


def parse_env(environ: Mapping[str, str]) -> CNIEnv:
    """Read and validate the CNI_* variables for the command in CNI_COMMAND."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(
            Code.INVALID_ENVIRONMENT,
            "invalid CNI_COMMAND",
            f"CNI_COMMAND={command!r} is not one of {list(COMMANDS)}",
        )
    if command == "VERSION":
        return CNIEnv(command=command)
    problems: list[str] = []
    missing = [v for v in REQUIRED[command] if not environ.get(v)]
    if missing:
        problems.append(f"missing {', '.join(missing)} (required for {command})")
    cid = environ.get("CNI_CONTAINERID", "")
    if cid and (why := validate_container_id(cid)):
        problems.append(f"CNI_CONTAINERID={cid!r} {why}")
    ifname = environ.get("CNI_IFNAME", "")
    if ifname and (why := validate_ifname(ifname)):
        problems.append(f"CNI_IFNAME={ifname!r} {why}")
    netns = environ.get("CNI_NETNS", "")
    if "\0" in netns or not encodable(netns):
        problems.append(f"CNI_NETNS={netns!r} is not a usable path")
    if problems:
        raise CNIError(
            Code.INVALID_ENVIRONMENT, "invalid CNI environment variables", "; ".join(problems)
        )
    args = parse_cni_args(environ.get("CNI_ARGS", ""))
    infra = args.get("K8S_POD_INFRA_CONTAINER_ID", "")
    if infra and (why := validate_container_id(infra)):
        raise CNIError(Code.INVALID_ENVIRONMENT, "invalid CNI_ARGS",
                       f"CNI_ARGS: K8S_POD_INFRA_CONTAINER_ID={infra!r} {why}")
    return CNIEnv(command=command, container_id=cid, netns=netns, ifname=ifname, args=args)
