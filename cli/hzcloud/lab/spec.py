"""The few facts of a site the lab needs, taken from the validated site model."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
        tenant=LabTenant(tenant.name, str(tenant.endpoint), str(tenant.subnet)) if tenant else None,
        ssh_user=site.ssh.user,
        ssh_key=site.ssh.key,
    )
