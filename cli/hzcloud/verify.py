"""The checks that prove a site works, run with testinfra over the rendered SSH config."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzcloud import phases
from hzcloud.outcome import Check, said
from hzcloud.plan import NodePlan, Plan

if TYPE_CHECKING:
    from hzcloud.model import Site


def host_for(node: NodePlan, state_dir: Path) -> Any:
    import testinfra

    return testinfra.get_host(f"ssh://{node.name}", ssh_config=str(state_dir / "ssh_config"))


def _node_checks(host: Any, node: NodePlan, plan: Plan, deployed: set[str]) -> list[Check]:
    out: list[Check] = []

    def add(name: str, passed: bool, detail: str, expected: str) -> None:
        out.append(Check(name, node.name, passed, detail, expected))

    try:
        host.run("true")
    except Exception as exc:  # testinfra raises backend-specific errors for an unreachable host
        add("reachable", False, said(exc), "answers over SSH")
        return out
    if "base" in deployed:
        tracking = host.run("chronyc -n tracking")
        leap = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in tracking.stdout.splitlines()
                if ln.startswith("Leap status")
            ),
            "unknown",
        )
        add(
            "clock in sync",
            tracking.rc == 0 and leap == "Normal",
            f"chrony leap status {leap}",
            "chrony leap status Normal",
        )
    role_phase = phases.role_phase()
    roles = [r for r in node.roles if role_phase.get(r) in deployed]
    for role in roles:
        for unit in phases.role_services().get(role, ()):
            svc = host.service(unit)
            running, enabled = svc.is_running, svc.is_enabled
            add(
                f"{unit} running and enabled",
                running and enabled,
                f"{'running' if running else 'stopped'} and {'enabled' if enabled else 'disabled'}",
                "running and enabled",
            )
    ss = host.run("ss -Hltn")
    ports = set()
    for line in ss.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3].rsplit(":", 1)[-1].isdigit():
            ports.add(int(parts[3].rsplit(":", 1)[-1]))
    role_ports = {
        role: [p.single for p in listed if p.owners and p.single is not None]
        for role, listed in phases.role_ports().items()
    }
    for role, numbers in role_ports.items():
        if role_phase.get(role) not in deployed:
            continue
        planned = role in node.roles
        for port in numbers:
            # a port listens exactly where the plan put its role
            shared = any(port in role_ports.get(r, []) for r in node.roles if r != role)
            if shared:
                continue
            add(
                f"port {port} ({role})",
                (port in ports) == planned,
                "listening" if port in ports else "closed",
                f"listening ({role} planned here)"
                if planned
                else f"closed ({role} not planned here)",
            )
    return out


def run_checks(
    plan: Plan,
    state_dir: Path,
    deployed: set[str],
    secrets: dict[str, str] | None = None,
    site: Site | None = None,
) -> list[Check]:
    """Run every check that applies to what has been deployed, hosts in parallel.

    site: the loaded site (the caller has it; read from state_dir's site folder otherwise).
    """
    if secrets is None:
        from hzcloud.secrets import read_secrets

        secrets = read_secrets(state_dir.parent)
    hosts = {n.name: host_for(n, state_dir) for n in plan.nodes}
    with ThreadPoolExecutor(max_workers=min(16, len(plan.nodes))) as pool:
        per_node = list(
            pool.map(
                lambda n: _stopped_or(
                    n.name, lambda: _node_checks(hosts[n.name], n, plan, deployed)
                ),
                plan.nodes,
            )
        )
    checks = [c for group in per_node for c in group]
    unreachable = {c.host for c in checks if c.name == "reachable"}
    if not unreachable:
        site_dir = state_dir.parent
        if site is None:
            from hzcloud.model import load_site

            site = load_site(site_dir)
        ctx = phases.CheckContext(hosts, plan, secrets, deployed, site, site_dir)
        for phase in phases.REGISTRY:  # each deployed phase's own checks, in the graph's order
            if phase.name in deployed and phase.checks is not None:
                checks += _stopped_or("", lambda p=phase: p.checks(ctx))  # type: ignore[misc]
    return checks


def _stopped_or(host: str, run: Callable[[], list[Check]]) -> list[Check]:
    """The checks, or one failed check saying in words why they stopped (a host gone mid-way)."""
    try:
        return run()
    except Exception as exc:  # testinfra raises backend-specific errors for a host that went away
        return [Check("checks ran to the end", host, False, said(exc), "every check answers")]


def check_junit_target(path: Path) -> None:
    """Exit 2 before any check runs when the JUnit report could not be written to path."""
    from hzcloud.errors import UsageError

    folder = path.parent.resolve()
    if path.is_dir():
        what = f"--junit {path}: is a folder"
    elif not folder.is_dir():
        what = f"--junit {path}: the folder {folder} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        what = f"--junit {path}: cannot write there"
    else:
        return
    raise UsageError(what, "nothing was checked", "give a file path in a writable folder")


def write_junit(checks: list[Check], path: Path) -> None:
    suite = ET.Element(
        "testsuite",
        name="hzcloud.verify",
        tests=str(len(checks)),
        failures=str(sum(not c.passed for c in checks)),
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=c.host or "site", name=c.name)
        props = ET.SubElement(case, "properties")
        for key, value in (("host", c.host), ("expected", c.expected), ("seen", c.detail)):
            ET.SubElement(props, "property", name=key, value=value)
        if not c.passed:
            ET.SubElement(
                case, "failure", message=c.line()
            ).text = f"host: {c.host}\ncheck: {c.name}\nexpected: {c.expected}\nseen: {c.detail}\n"
        else:
            ET.SubElement(case, "system-out").text = c.detail
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
