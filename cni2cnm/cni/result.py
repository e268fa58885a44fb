"""One internal result (the 1.1.0 shape), rendered exactly into every spec version.

- 1.1.0: interfaces (+mtu, socketPath, pciID), ips, routes (+mtu, advmss,
  priority, table, scope), dns.
- 1.0.0: as 1.1.0 without the 1.1.0 additions and without ips[].version.
- 0.3.0/0.3.1/0.4.0: as 1.0.0, and every ips[] entry carries version "4"/"6".
- 0.1.0/0.2.0: {ip4: {ip, gateway, routes}, ip6: {...}, dns}: the first IPv4
  and the first IPv6 address only; routes go to the family of their dst.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cni2cnm.cni import version as cniversion
from cni2cnm.cni.config import DNS, render_validation_error
from cni2cnm.cni.errors import CNIError, Code


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _cidr(v: str) -> str:
    ipaddress.ip_interface(v)  # raises ValueError
    if "/" not in v:
        raise ValueError(f"{v!r} is not in CIDR notation")
    return v


def _ip(v: str | None) -> str | None:
    if v:
        ipaddress.ip_address(v)
    return v or None


CIDR = Annotated[str, AfterValidator(_cidr)]  # an address or network with its prefix
IP = Annotated[str | None, AfterValidator(_ip)]  # a bare address; "" becomes None
Count = Annotated[int | None, Field(ge=0)]


class Interface(_Strict):
    name: str
    mac: str | None = None
    mtu: Count = None
    sandbox: str | None = None
    socketPath: str | None = None
    pciID: str | None = None


class IPConfig(_Strict):
    address: CIDR
    gateway: IP = None
    interface: Count = None

    @property
    def family(self) -> int:
        return ipaddress.ip_interface(self.address).version


class Route(_Strict):
    dst: CIDR
    gw: IP = None
    mtu: Count = None
    advmss: Count = None
    priority: Count = None
    table: Count = None
    scope: Count = None

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.dst, strict=False).version


class Result(_Strict):
    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    # ---- rendering -------------------------------------------------------

    def render(self, cni_version: str) -> dict[str, Any]:
        """The result as the given spec version prints it."""
        cniversion.require_supported(cni_version)
        out: dict[str, Any] = {"cniVersion": cni_version}
        if not cniversion.has_interfaces(cni_version):
            out.update(self._render_020())
        else:
            newest = cni_version == "1.1.0"
            with_version = not cniversion.at_least(cni_version, "1.0.0")
            if self.interfaces:
                out["interfaces"] = [_render_interface(i, newest) for i in self.interfaces]
            if self.ips:
                out["ips"] = [_render_ip(ip, with_version) for ip in self.ips]
            if self.routes:
                out["routes"] = [_render_route(r, newest) for r in self.routes]
        out["dns"] = self.dns.model_dump(
            exclude_none=True, include={"nameservers", "domain", "search", "options"}
        )
        return out

    def _render_020(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for family, key in ((4, "ip4"), (6, "ip6")):
            first = next((ip for ip in self.ips if ip.family == family), None)
            if first is None:
                continue
            block: dict[str, Any] = {"ip": first.address}
            if first.gateway:
                block["gateway"] = first.gateway
            routes = [_render_route(r, False) for r in self.routes if r.family == family]
            if routes:
                block["routes"] = routes
            out[key] = block
        return out

    # ---- building --------------------------------------------------------

    def add_interface(self, iface: Interface) -> int:
        self.interfaces.append(iface)
        return len(self.interfaces) - 1


def _render_interface(i: Interface, newest: bool) -> dict[str, Any]:
    keys = ["name", "mac"]
    if newest:
        keys += ["mtu"]
    keys += ["sandbox"]
    if newest:
        keys += ["socketPath", "pciID"]
    out: dict[str, Any] = {}
    for k in keys:
        v = getattr(i, k)
        if v is not None and v != "":
            out[k] = v
    return out


def _render_ip(ip: IPConfig, with_version: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_version:
        out["version"] = str(ip.family)
    out["address"] = ip.address
    if ip.gateway:
        out["gateway"] = ip.gateway
    if ip.interface is not None:
        out["interface"] = ip.interface
    return out


def _render_route(r: Route, newest: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": r.dst}
    if r.gw:
        out["gw"] = r.gw
    if newest:
        for k in ("mtu", "advmss", "priority", "table", "scope"):
            v = getattr(r, k)
            if v is not None:
                out[k] = v
    return out


# ---- parsing a prevResult -------------------------------------------------


def parse_result(doc: Any, cni_version: str) -> Result:
    """Parse a result (e.g. prevResult) written in `cni_version` into the internal model."""
    if not isinstance(doc, dict):
        raise CNIError(Code.INVALID_CONFIG, "invalid prevResult", "prevResult must be an object")
    try:
        if cniversion.has_interfaces(cni_version):
            return _parse_current(doc, cni_version)
        return _parse_020(doc)
    except ValidationError as e:
        raise CNIError(
            Code.INVALID_CONFIG,
            "invalid prevResult",
            f"not a valid {cni_version} result: {render_validation_error(e)}",
        ) from None
    except (ValueError, TypeError) as e:
        raise CNIError(
            Code.INVALID_CONFIG, "invalid prevResult", f"not a valid {cni_version} result: {e}"
        ) from None


def _parse_current(doc: dict[str, Any], cni_version: str) -> Result:
    with_version = not cniversion.at_least(cni_version, "1.0.0")
    if with_version:
        for ip in doc.get("ips") or []:
            if isinstance(ip, dict) and "version" in ip:
                fam = ipaddress.ip_interface(str(ip.get("address"))).version
                if str(ip["version"]) != str(fam):
                    raise ValueError(
                        f"ips: version {ip['version']!r} does not match {ip.get('address')}"
                    )
    res = Result.model_validate(
        {k: doc[k] for k in ("interfaces", "ips", "routes", "dns") if doc.get(k) is not None}
    )
    for ip in res.ips:
        if ip.interface is not None and ip.interface >= len(res.interfaces):
            raise ValueError(f"ips: interface index {ip.interface} out of range")
    return res


def _parse_020(doc: dict[str, Any]) -> Result:
    res = Result()
    for key in ("ip4", "ip6"):
        block = doc.get(key)
        if block is None:
            continue
        if not isinstance(block, dict) or "ip" not in block:
            raise ValueError(f"{key}: expected an object with 'ip'")
        ip = IPConfig(address=block["ip"], gateway=block.get("gateway"))
        if ip.family != int(key[-1]):
            raise ValueError(f"{key}: {ip.address} is not an IPv{key[-1]} address")
        res.ips.append(ip)
        for r in block.get("routes") or []:
            res.routes.append(Route.model_validate(r))
    if doc.get("dns") is not None:
        res.dns = DNS.model_validate(doc["dns"])
    return res
