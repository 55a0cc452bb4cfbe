"""The few facts of a site the lab needs, taken from the validated site model."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hzcloud.cloudlink import endpoint_interface
from hzcloud.lab.errors import LabUsageError
from hzcloud.model import load_site
from hzcloud.plan import plan_site


@dataclass(frozen=True)
class LabServer:
    name: str
    address: str
    disks: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabTenant:
    name: str
    endpoint: str
    subnet: str
    api: str | None = None


@dataclass(frozen=True)
class LabSpec:
    code: str
    servers: tuple[LabServer, ...]
    management: str
    mirror: str | None
    tenant: LabTenant | None
    ssh_user: str
    ssh_key: str

    @property
    def bridge_address(self) -> str:
        """The host's address on the management bridge: the mirror's host, else the first host."""
        net = ipaddress.ip_network(self.management)
        if self.mirror:
            host = urlsplit(self.mirror).hostname
            if host and ipaddress.ip_address(host) in net:
                return host
        return str(next(net.hosts()))

    @property
    def prefix_length(self) -> int:
        return ipaddress.ip_network(self.management).prefixlen

    @property
    def gateway(self) -> LabServer | None:
        """The server that reaches the cloud tenant (role pin `gateway`)."""
        return next((s for s in self.servers if "gateway" in s.roles), None)

    def server(self, name: str) -> LabServer:
        for server in self.servers:
            if server.name == name:
                return server
        names = ", ".join(s.name for s in self.servers)
        raise LabUsageError(f"no node named {name!r} in the lab", fix=f"use one of: {names}")


def load_spec(site_yaml: Path) -> LabSpec:
    """The lab's view of a validated site: one schema, the site model's."""
    site = load_site(site_yaml)
    plan = plan_site(site)
    planned = {n.name: n.roles for n in plan.nodes}
    tenant = site.cloud.tenants[0] if site.cloud.tenants else None
    return LabSpec(
        code=site.hospital.code,
        servers=tuple(
            LabServer(
                name=s.name,
                address=str(s.address),
                disks=tuple(s.disks),
                # the plan's roles: it decides which server carries the cloud link, which run
                # containers (their nspawn flags differ)
                roles=tuple(sorted(planned[s.name])),
            )
            for s in site.servers
        ),
        management=str(site.networks.management),
        mirror=str(site.networks.mirror) if site.networks.mirror else None,
        tenant=LabTenant(
            tenant.name,
            str(tenant.endpoint),
            str(tenant.subnet),
            str(tenant.api) if tenant.api else None,
        )
        if tenant
        else None,
        ssh_user=site.ssh.user,
        ssh_key=site.ssh.key,
    )


def code_token(code: str) -> str:
    """The part of a site code in host link names: its first letters and a digest of all of it.

    Link names hold 15 characters, a code up to 32: cut short alone, `stgeorge` and `stgeo`
    would share their bridges. The digest tells them apart; `clashes` catches the rest.
    """
    return code[:3] + hashlib.sha256(code.encode()).hexdigest()[:4]


def bridge_name(code: str) -> str:
    return f"hz{code_token(code)}-mgmt"


def cloud_bridge_name(code: str) -> str:
    return f"hz{code_token(code)}-cloud"


def tenant_netns_name(code: str, tenant: str) -> str:
    # The veth on the cloud bridge has the same name: links and namespaces do not share a name space.
    return f"hz{code_token(code)}-{tenant}"[:15]


@dataclass(frozen=True)
class LabClaim:
    """What one lab holds on this host, all derived from its site: checked against the others."""

    site: str
    code: str
    networks: tuple[str, ...]
    machines: tuple[str, ...]
    links: tuple[str, ...]
    netns: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "site": self.site,
            "code": self.code,
            "networks": list(self.networks),
            "machines": list(self.machines),
            "links": list(self.links),
            "netns": self.netns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LabClaim:
        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        networks, machines, links = (strings(k) for k in ("networks", "machines", "links"))
        netns = str(data.get("netns") or "")
        return cls(str(data["site"]), str(data["code"]), networks, machines, links, netns)


def claim_of(site: Path, spec: LabSpec) -> LabClaim:
    """Every host-wide name and network the lab of this site uses."""
    links = [bridge_name(spec.code)]
    networks = [spec.management]
    netns = ""
    if spec.tenant is not None:
        netns = tenant_netns_name(spec.code, spec.tenant.name)
        links += [cloud_bridge_name(spec.code), netns]
        # the cloud bridge (the lab's internet: the /24 around the endpoint) and the tenant's
        # private subnet behind it; and the emulated endpoint's WireGuard interface
        public = ipaddress.ip_network(f"{spec.tenant.endpoint}/24", strict=False)
        networks += [str(public), spec.tenant.subnet]
        links.append(endpoint_interface(spec.code, spec.tenant.name))
        if spec.gateway is not None:
            links.append(f"vt-{spec.gateway.name}"[:15])  # the gateway's veth (node.py)
    machines = tuple(s.name for s in spec.servers)
    return LabClaim(str(site), spec.code, tuple(networks), machines, tuple(links), netns)


def clashes(mine: LabClaim, theirs: LabClaim) -> list[str]:
    """Why two labs cannot be up on one host at once; empty when they can."""
    out = []
    if mine.code == theirs.code:
        out.append(f"both have hospital.code {mine.code!r}")
    for a in mine.networks:
        for b in theirs.networks:
            if ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b)):
                out.append(f"network {a} overlaps {b}")
    machines = sorted(set(mine.machines) & set(theirs.machines))
    if machines:
        out.append(f"both name servers {', '.join(machines)} (nspawn machine names)")
    links = sorted(set(mine.links) & set(theirs.links))
    if links:
        out.append(f"both need host links {', '.join(links)}")
    return out


class LabClash(LabUsageError):
    """Two sites' labs would share a name or a network on this host; nothing was made."""

    exit_code = 2


def clash_error(mine: LabClaim, theirs: LabClaim, reasons: list[str]) -> LabClash:
    return LabClash(
        f"the lab of {mine.site} clashes with the lab up from {theirs.site}",
        cause="; ".join(reasons),
        fix=f"give {mine.site}/site.yaml its own hospital.code, networks and server names "
        f"(lab servers are named after the code, e.g. {mine.code}-01), "
        f"or take the other lab down: hzcloud lab down --site {theirs.site}",
    )
