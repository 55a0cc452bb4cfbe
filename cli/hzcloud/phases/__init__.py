"""The phase registry: every phase is one module that says what it is, needs and exposes.

plan, render, preflight, the engine, verify and report read this registry and nothing else
for these facts: a port, a service name, the phase that owns a role is written once, in the
phase's module, and rendered into group_vars for the roles (`hz_port_*`, `hz_firewall_ports`).

Adding a phase = a module here (a `PHASE = Phase(...)`), its entry in `REGISTRY`, and its
playbook (executor "ansible": playbooks/<name>.yml) or its stack (executor "pulumi": a
`program` in the module building on stacks/).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from hzcloud.executors import RunContext
    from hzcloud.model import Site
    from hzcloud.outcome import Check, OnEvent, PhaseResult
    from hzcloud.plan import Plan

# "ansible+pulumi": a phase that runs a playbook and then Pulumi stacks itself (Phase.run)
Executor = Literal["paramiko", "ansible", "pulumi", "testinfra", "ansible+pulumi"]
Reach = Literal["any", "management", "nodes"]


@dataclass(frozen=True)
class Port:
    """A port a role listens on: the firewall opens it, preflight wants it free, verify open."""

    var: str  # rendered as hz_port_<var> for the roles
    number: int | str  # a number, or a range "6800-7300" (firewall only)
    role: str
    reach: Reach = "nodes"
    proto: Literal["tcp", "udp"] = "tcp"
    # processes that may hold it on a re-run (ours); empty: not checked by preflight/verify
    owners: tuple[str, ...] = ()

    @property
    def single(self) -> int | None:
        return self.number if isinstance(self.number, int) else None


@dataclass(frozen=True)
class Endpoint:
    """A client endpoint of the deployed site, as `up` prints it and `status` lists it."""

    name: str
    url: str
    ca: str = ""  # the CA file a client verifies TLS with, where TLS is used
    note: str = ""


@dataclass(frozen=True)
class Need:
    """A file a phase needs on the control node before it touches any host, or (key set) a
    key the operator provides in that YAML file (a tenant's credentials in secrets.yaml)."""

    what: str  # "the artifacts folder", "kubelet", ...
    path: Path
    fix: str
    key: str = ""

    def met(self) -> bool:
        if not self.key:
            return self.path.exists()
        from hzcloud.secrets import secret_names

        return self.key in secret_names(self.path.parent)

    @property
    def shown(self) -> str:
        return f"{self.key} in {self.path}" if self.key else str(self.path)


@dataclass(frozen=True)
class CheckContext:
    """What a phase's verify checks get: a testinfra host per node, the plan, the secrets."""

    hosts: dict[str, Any]
    plan: Plan
    secrets: dict[str, str]
    deployed: set[str]
    site: Site | None = None
    site_dir: Path | None = None


@dataclass(frozen=True)
class Phase:
    """One phase of `hzcloud up`."""

    name: str
    description: str
    executor: Executor
    depends_on: tuple[str, ...] = ()
    # the roles this phase deploys (verify checks a role only once its phase has completed)
    roles: tuple[str, ...] = ()
    # executor "ansible": playbooks/<playbook>.yml (default: the phase's name)
    playbook: str = ""
    ports: tuple[Port, ...] = ()
    # systemd units that run and are enabled on each role's servers once the phase is done
    services: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # facts its roles read, rendered into group_vars/all/phases.yml (written only here)
    role_vars: dict[str, object] = field(default_factory=dict)
    # executor "pulumi": the inline program of the phase's stack for this site
    program: Callable[[Site, Plan, Path], Callable[[], None]] | None = None
    # executor "pulumi" with a playbook too: called with the stack's outputs once it is up,
    # before the playbook runs on what the stack made (the cloud phase's link and backups)
    after_stack: Callable[[Site, Plan, Path, dict[str, Any]], None] | None = None
    # is the phase in this site's plan at all
    wanted: Callable[[Site], bool] = lambda _site: True
    # files it needs on the control node, checked before any host is touched
    needs: Callable[[Site, Path], list[Need]] = lambda _site, _dir: []
    # why it cannot run in this build ('' when it can)
    unavailable: str = ""
    endpoints: Callable[[Site, Plan, Path], list[Endpoint]] = lambda _s, _p, _d: []
    # the site-wide checks that prove the phase works (verify runs them once it completed)
    checks: Callable[[CheckContext], list[Check]] | None = None
    # a phase whose work is not one executor's runs itself (bundle: a playbook for the needs,
    # then a Pulumi stack per service), through the executors' functions
    run: Callable[[Phase, RunContext, OnEvent], PhaseResult] | None = None


def _registry() -> tuple[Phase, ...]:
    from hzcloud.phases import (
        base,
        bundle,
        cloud,
        data,
        ingress,
        kubernetes,
        platform,
        preflight,
        storage,
        verify,
    )

    return (
        preflight.PHASE,
        base.PHASE,
        storage.PHASE,
        data.PHASE,
        kubernetes.PHASE,
        ingress.PHASE,
        platform.PHASE,
        cloud.PHASE,
        bundle.PHASE,
        verify.PHASE,
    )


def phase(name: str) -> Phase:
    return BY_NAME[name]


def all_ports() -> Iterable[Port]:
    for p in REGISTRY:
        yield from p.ports


def port(var: str) -> int:
    """The number of a single port by its variable name (e.g. 'postgres')."""
    for p in all_ports():
        if p.var == var and p.single is not None:
            return p.single
    raise KeyError(var)


def role_phase() -> dict[str, str]:
    """role -> the phase that deploys it."""
    return {role: p.name for p in REGISTRY for role in p.roles}


def role_ports() -> dict[str, list[Port]]:
    out: dict[str, list[Port]] = {}
    for p in all_ports():
        out.setdefault(p.role, []).append(p)
    return out


def role_services() -> dict[str, tuple[str, ...]]:
    return {role: units for p in REGISTRY for role, units in p.services.items()}


def endpoints(site: Site, plan: Plan, site_dir: Path, deployed: set[str]) -> list[Endpoint]:
    """The client endpoints of every deployed phase, in registry order."""
    return [e for p in REGISTRY if p.name in deployed for e in p.endpoints(site, plan, site_dir)]


def group_vars() -> dict[str, object]:
    """What the roles read of the registry (rendered into group_vars/all/phases.yml)."""
    firewall: dict[str, list[dict[str, str]]] = {}
    for p in all_ports():
        firewall.setdefault(p.role, []).append(
            {"port": str(p.number), "proto": p.proto, "from": p.reach}
        )
    single = {f"hz_port_{p.var}": p.single for p in all_ports() if p.single is not None}
    extra = {k: v for p in REGISTRY for k, v in p.role_vars.items()}
    return {**dict(sorted(single.items())), "hz_firewall_ports": firewall, **extra}


def artifacts_path(site: Site, site_dir: Path) -> Path:
    """The site's artifacts folder, absolute (a symlink stays one: the lab's is a shared cache)."""
    import os

    folder = Path(os.path.expanduser(site.artifacts))
    return folder if folder.is_absolute() else site_dir / folder


def artifact_needs(site: Site, site_dir: Path, files: Iterable[str], why: str) -> list[Need]:
    """The artifacts folder and each named file in it, as needs."""
    folder = artifacts_path(site, site_dir)
    fix = (
        f"build them with `scripts/build-artifacts {folder}` and `scripts/build-images {folder}`"
        " (or copy a release's artifacts there), or set `artifacts:` in site.yaml"
    )
    if not folder.is_dir():  # one line for the folder rather than one per file
        return [Need(f"{why}: the artifacts folder", folder, fix)]
    return [Need(f"{why}: {f}", folder / f, fix) for f in files]


# last: the phase modules import the helpers above
REGISTRY: tuple[Phase, ...] = _registry()
BY_NAME = {p.name: p for p in REGISTRY}
