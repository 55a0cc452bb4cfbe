"""The way in: how the hospital network reaches the services on the cluster.

HAProxy on the gateway node(s) (Debian's package, role way_in) holds the site's ingress VIP,
terminates HTTPS with one certificate per host name signed by the site CA, and passes plain
TCP entry points through (DICOM). Behind it every route goes to the NodePort of its
Kubernetes Service on every node, where kube-proxy takes it to a ready pod.

Why HAProxy + keepalived and not an ingress controller built from Go modules: both come from
the site's Debian mirror (nothing to build or import as an image), they run outside the
cluster (the way in still answers for what it can while Kubernetes is degraded), TCP entry
points are one line each, and an in-cluster controller would still need a VIP announcer
(another build) to be reachable on a fixed address.

The routes are facts of the plan: the platform's canary and each picked bundle entry's
`needs.way_in`, with a NodePort per route that stays the same from run to run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

HTTPS_PORT = 443
# Kubernetes' default NodePort range is 30000-32767; hzcloud's routes take 30100-32099 and
# leave the rest to anything an operator creates by hand.
NODE_PORT_FIRST = 30100
NODE_PORT_COUNT = 2000
# The platform's canary (stacks/echo.py), served on the way in like any service.
CANARY = ("echo", "hz-echo", "echo", 80)


@dataclass(frozen=True)
class Route:
    name: str  # unique in the site: the service, or <service>-<tcp entry>
    kind: Literal["https", "tcp"]
    host: str  # <service>.<domain>
    port: int  # on the ingress VIP
    namespace: str
    service: str  # the Kubernetes Service
    target: int  # the Service's port
    node_port: int

    @property
    def url(self) -> str:
        return f"https://{self.host}/" if self.kind == "https" else f"tcp://{self.host}:{self.port}"


def namespace_of(entry: str) -> str:
    """The namespace a bundle entry's workloads live in."""
    return f"hz-{entry}"


def ingress_address(site: Site, plan: Plan) -> str:
    """The way in's address: networks.ingress_vip, else the first gateway's own address."""
    if site.networks.ingress_vip is not None:
        return str(site.networks.ingress_vip)
    gateways = plan.hosts("gateway")
    return gateways[0].address if gateways else ""


def _node_ports(names: list[str]) -> dict[str, int]:
    """A NodePort per route name: from a hash of the name, so adding a service moves no other
    route (only a collision probes on, in sorted order)."""
    taken: dict[str, int] = {}
    used: set[int] = set()
    for name in sorted(names):
        slot = zlib.crc32(name.encode()) % NODE_PORT_COUNT
        while NODE_PORT_FIRST + slot in used:
            slot = (slot + 1) % NODE_PORT_COUNT
        used.add(NODE_PORT_FIRST + slot)
        taken[name] = NODE_PORT_FIRST + slot
    return taken


def routes(site: Site, plan: Plan, site_dir: Path) -> list[Route]:
    """Every route of the site's way in, sorted by name; none without Kubernetes."""
    from hzcloud.bundle import bundle_for_site

    if not site.services.kubernetes.enabled or not plan.hosts("gateway"):
        return []
    domain = site.hospital.site_domain
    name, namespace, service, target = CANARY
    drafts: list[tuple[str, Literal["https", "tcp"], str, int, str, str, int]] = [
        (name, "https", f"{name}.{domain}", HTTPS_PORT, namespace, service, target)
    ]
    if site.bundle.services:
        bundle = bundle_for_site(site, site_dir)
        seen: set[str] = set()
        for picked in site.bundle.services:
            le = bundle.entry_for(picked)
            if le is None or le.entry.name in seen or le.entry.needs.way_in is None:
                continue
            entry = le.entry
            seen.add(entry.name)
            way = entry.needs.way_in
            assert way is not None
            host = f"{way.host}.{domain}"
            ns = namespace_of(entry.name)
            if way.https is not None:
                drafts.append((entry.name, "https", host, HTTPS_PORT, ns, entry.name, way.https))
            for t in way.tcp:
                drafts.append(
                    (f"{entry.name}-{t.name}", "tcp", host, t.port, ns, entry.name, t.target)
                )
    ports = _node_ports([d[0] for d in drafts])
    return sorted(
        (Route(n, k, h, p, ns, svc, tgt, ports[n]) for n, k, h, p, ns, svc, tgt in drafts),
        key=lambda r: r.name,
    )


def route(site: Site, plan: Plan, site_dir: Path, name: str) -> Route | None:
    return next((r for r in routes(site, plan, site_dir) if r.name == name), None)
