"""The planner: a pure function from a site to role placement and ordered phases."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hzcloud.model import FOLLOWS, QUORUM_SIZE, Role, Site

# How much a role weighs on a server; the planner evens the sum out.
WEIGHT = {
    Role.POSTGRES: 3,
    Role.K8S_SERVER: 2,
    Role.CEPH_OSD: 2,
    Role.CEPH_MON: 1,
    Role.REDIS: 1,
    Role.CEPH_RGW: 1,
    Role.GATEWAY: 1,
}

# Order of placement: heaviest first, so they spread before the light ones fill gaps.
PLACEMENT_ORDER = (
    Role.POSTGRES,
    Role.K8S_SERVER,
    Role.CEPH_MON,
    Role.REDIS,
    Role.CEPH_RGW,
    Role.GATEWAY,
)


@dataclass(frozen=True)
class NodePlan:
    name: str
    address: str
    roles: tuple[str, ...]
    disks: tuple[str, ...]


@dataclass(frozen=True)
class Phase:
    name: str
    depends_on: tuple[str, ...]
    executor: str
    description: str


@dataclass(frozen=True)
class Plan:
    site: str
    hospital: str
    nodes: tuple[NodePlan, ...]
    phases: tuple[Phase, ...]

    def hosts(self, role: Role | str) -> list[NodePlan]:
        return [n for n in self.nodes if str(role) in n.roles]

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "hospital": self.hospital,
            "nodes": [
                {
                    "name": n.name,
                    "address": n.address,
                    "roles": list(n.roles),
                    "disks": list(n.disks),
                }
                for n in self.nodes
            ],
            "phases": [
                {
                    "name": p.name,
                    "depends_on": list(p.depends_on),
                    "executor": p.executor,
                    "description": p.description,
                }
                for p in self.phases
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


ROLE_ORDER = tuple(Role)


def place_roles(site: Site) -> dict[str, set[Role]]:
    """Role placement: pins first, then the least-loaded servers, quorums on distinct servers."""
    names = [s.name for s in site.servers]
    roles: dict[str, set[Role]] = {s.name: set() for s in site.servers}
    load = dict.fromkeys(names, 0)

    def give(name: str, role: Role) -> None:
        roles[name].add(role)
        load[name] += WEIGHT.get(role, 0)

    pinned = {s.name: set(s.roles) for s in site.servers}
    if site.services.ceph.enabled:
        for s in site.storage_servers:
            give(s.name, Role.CEPH_OSD)
    sizes = dict(QUORUM_SIZE)
    sizes[Role.CEPH_MON] = site.services.ceph.mons
    for role in PLACEMENT_ORDER:
        for n in names:
            if role in pinned[n] and site.enabled(role):
                give(n, role)
    for role in PLACEMENT_ORDER:
        if not site.enabled(role):
            continue
        size = min(sizes[role], len(names))
        chosen = [n for n in names if role in pinned[n]]
        eligible = [
            n
            for n in names
            if n not in chosen and not (role is Role.K8S_SERVER and Role.K8S_AGENT in pinned[n])
        ]
        eligible.sort(key=lambda n: (load[n], names.index(n)))
        for n in eligible[: size - len(chosen)]:
            give(n, role)
    for role, leader in FOLLOWS.items():
        if not site.enabled(role):
            continue
        group = [n for n in names if leader in roles[n]]
        want = min(sizes[role], len(group))
        chosen = [n for n in group if role in pinned[n]]
        chosen += [n for n in group if n not in chosen][: want - len(chosen)]
        for n in chosen:
            give(n, role)
    if site.services.kubernetes.enabled:
        for n in names:
            if Role.K8S_SERVER not in roles[n]:
                give(n, Role.K8S_AGENT)
    return roles


def plan_phases(site: Site) -> tuple[Phase, ...]:
    """The phase graph, from the registry; a phase the site does not want is not in it, and
    nothing depends on it (a phase left with no prerequisite depends on base)."""
    from hzcloud.phases import REGISTRY

    present = [p for p in REGISTRY if p.wanted(site)]
    names = {p.name for p in present}
    phases = []
    for spec in present:
        kept = tuple(d for d in spec.depends_on if d in names)
        if not kept and spec.name != "preflight":
            kept = ("base",)
        phases.append(Phase(spec.name, kept, spec.executor, spec.description))
    return tuple(phases)


def plan_site(site: Site) -> Plan:
    """Same site in, same plan out, byte for byte."""
    roles = place_roles(site)
    nodes = tuple(
        NodePlan(
            name=s.name,
            address=str(s.address),
            roles=tuple(str(r) for r in ROLE_ORDER if r in roles[s.name]),
            disks=tuple(s.disks) if Role.CEPH_OSD in roles[s.name] else (),
        )
        for s in site.servers
    )
    return Plan(site.hospital.code, site.hospital.name, nodes, plan_phases(site))
