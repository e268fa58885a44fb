"""Engine addresses (the config's dockerHost, DOCKER_HOST, --docker-host): checked before any
connection is tried, and never printed with their userinfo.

An address is `unix:///path`, `tcp://HOST:PORT` (`http://`, `https://` too) or
`ssh://[USER@]HOST[:PORT]`, as the Docker SDK takes them; a bare `HOST:PORT` is `tcp://`.
Refused, naming what is wrong: a URL that does not parse (`tcp://[::1`), a port out of range or
missing, another scheme, a query or fragment, a path on ssh://, and credentials: dockerd takes
no HTTP credentials, so a `user:password@` would only end up in logs (ssh:// may name a user,
never a password).
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from cni2cnm.engine.errors import EngineConfigError

TCP_SCHEMES = ("tcp", "http", "https")
SCHEMES = ("unix", "http+unix", "ssh", *TCP_SCHEMES)
HIDDEN = "***"


def redact(url: str) -> str:
    """`url` with its userinfo (`user:password@`) replaced by `***@`: what may be printed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc = rest[:end]
    if "@" not in netloc:
        return url
    return f"{scheme}{sep}{HIDDEN}@{netloc.rpartition('@')[2]}{rest[end:]}"


def check_address(url: str) -> None:
    """Raise EngineConfigError naming what makes `url` unusable as an engine address."""
    problem = _problem(url.strip())
    if problem:
        raise EngineConfigError(f"engine address {redact(url)!r}: {problem}")


def _problem(text: str) -> str:
    if text in ("", "unix://"):
        return ""  # the SDK's default socket
    try:
        parts = urlsplit(text if "://" in text else f"tcp://{text}")
        port = parts.port
    except ValueError as e:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        return f"not a valid URL ({e})"
    if parts.scheme not in SCHEMES:
        return (f"unsupported scheme {parts.scheme!r}; use unix:///PATH, tcp://HOST:PORT or "
                "ssh://[USER@]HOST")
    if parts.query or parts.fragment:
        return "a query or fragment is not part of an engine address"
    return _credentials_problem(parts) or _location_problem(parts, port)


def _credentials_problem(parts: SplitResult) -> str:
    if parts.password is not None:
        return ("a password in the address is refused (it would be logged); "
                + ("use an SSH key" if parts.scheme == "ssh" else "dockerd takes no "
                   "credentials: use the config's tls client certificate"))
    if parts.username is not None and parts.scheme != "ssh":
        return ("a user in the address is refused: dockerd takes no credentials; use the "
                "config's tls client certificate")
    return ""


def _location_problem(parts: SplitResult, port: int | None) -> str:
    if parts.scheme in TCP_SCHEMES:
        if not parts.hostname:
            return "no host (tcp://HOST:PORT)"
        if not port:
            return "no port (tcp://HOST:PORT, e.g. 2376 with TLS)"
    if parts.scheme == "ssh":
        if not parts.hostname:
            return "no host (ssh://[USER@]HOST)"
        if parts.path:
            return "ssh:// takes no path"
    return ""
