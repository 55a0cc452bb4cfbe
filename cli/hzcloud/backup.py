"""Backups into the site's cloud tenant and restore drills from it (`hzcloud backup|restore`).

The layers:
- `postgres`: pgBackRest base backups (full/diff/incr) in the tenant repository (repo2);
- `postgres-wal`: PostgreSQL's WAL archive there (what a restore replays past the last backup).

The cloud phase installs the tool each PostgreSQL node runs (`hz-backup`, roles/pg_backup): it
answers in JSON; this module asks every PostgreSQL node over SSH (state/ssh_config, as Ansible
does) and lets Patroni's leader do the work. A restore drill restores the newest backup and the
WAL after it into scratch space on the leader's node (never the live data directory or port),
starts it on a port of its own, compares row counts of every table and a checksum of the drill
table with the live cluster, and removes it.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hzcloud.errors import HzError, UsageError
from hzcloud.model import Role, Site
from hzcloud.plan import Plan

TOOL = "/usr/local/sbin/hz-backup"
BACKUP_TYPES = ("full", "diff", "incr")


@dataclass(frozen=True)
class Layer:
    name: str
    last_good: str | None  # ISO 8601 (UTC), none when nothing is in the tenant yet
    age_seconds: float | None
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "last_good": self.last_good,
            "age_seconds": self.age_seconds,
            "target": self.target,
        }


@dataclass(frozen=True)
class DrillLayer:
    name: str
    passed: bool
    seconds: float
    rpo_seconds: float | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "seconds": self.seconds,
            "rpo_seconds": self.rpo_seconds,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class BackupRun:
    node: str
    kind: str
    seconds: float


def _node_json(state_dir: Path, node: str, *args: str, timeout: float = 3600) -> dict[str, Any]:
    """Run the node's backup tool over SSH; its JSON answer."""
    argv = ["ssh", "-F", str(state_dir / "ssh_config"), node, TOOL, *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HzError(
            f"{node}: hz-backup {' '.join(args)} took over {timeout:.0f} s", "", ""
        ) from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise HzError(
            f"{node}: hz-backup {' '.join(args)} failed (exit {proc.returncode})",
            (proc.stderr or proc.stdout).strip()[-800:],
            "run `hzcloud up SITE --only cloud` (it installs the backup tool), and check that "
            "the tenant is reachable from the gateway",
        )
    data: dict[str, Any] = json.loads(lines[-1])
    if data.get("ok") is False or "error" in data:
        raise HzError(
            f"{node}: hz-backup {' '.join(args)} failed",
            str(data.get("error", "")),
            "check the link (`hzcloud status SITE`) and the tenant's bucket",
        )
    return data


def _postgres_nodes(site: Site, plan: Plan) -> list[str]:
    if not site.cloud.tenants:
        raise UsageError(
            "this site has no cloud tenant to back up into",
            "site.yaml cloud.tenants is empty",
            "add a tenant (see inventories/sample-hospital/site.yaml), then `hzcloud up`",
        )
    if not site.services.postgres.enabled:
        raise UsageError("PostgreSQL is switched off on this site: nothing to back up", "", "")
    return [n.name for n in plan.hosts(Role.POSTGRES)]


def _statuses(state_dir: Path, nodes: list[str]) -> dict[str, dict[str, Any] | HzError]:
    def one(node: str) -> dict[str, Any] | HzError:
        try:
            return _node_json(state_dir, node, "status", timeout=120)
        except HzError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        return dict(zip(nodes, pool.map(one, nodes), strict=True))


def _leader(state_dir: Path, nodes: list[str], wait: float = 60) -> tuple[str, dict[str, Any]]:
    """Patroni's leader and its status; asked again for a while (a failover takes seconds)."""
    deadline = time.monotonic() + wait
    while True:
        found = _statuses(state_dir, nodes)
        for node, status in found.items():
            if isinstance(status, dict) and status.get("leader"):
                return node, status
        if time.monotonic() > deadline:
            break
        time.sleep(3)
    causes = "; ".join(
        f"{n}: {s.what if isinstance(s, HzError) else 'replica'}" for n, s in found.items()
    )
    raise HzError(
        "no PostgreSQL leader answered",
        causes,
        "check the cluster: hzcloud verify SITE",
    )


def target(site: Site) -> str:
    t = site.cloud.tenants[0]
    return f"s3://{t.bucket_name(site.hospital.code)}/hzcloud/{site.hospital.code}/pgbackrest ({t.name})"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def layers_from(status: dict[str, Any], where: str) -> tuple[Layer, ...]:
    """The layers' last good points from a leader's `hz-backup status` answer."""
    now = float(status.get("now") or time.time())
    stops = [
        float(b["timestamp"]["stop"])
        for stanza in status.get("info") or []
        for b in stanza.get("backup") or []
        if not b.get("error")
    ]
    last = max(stops) if stops else None
    archiver = status.get("archiver") or {}
    wal = float(archiver.get("last_archived_time") or 0) or None
    return (
        Layer(
            "postgres", _iso(last) if last else None, round(now - last, 1) if last else None, where
        ),
        Layer(
            "postgres-wal", _iso(wal) if wal else None, round(now - wal, 1) if wal else None, where
        ),
    )


def status(site: Site, plan: Plan, state_dir: Path) -> tuple[Layer, ...]:
    """Each layer's newest good copy in the tenant and its age (asks the leader)."""
    _, found = _leader(state_dir, _postgres_nodes(site, plan))
    return layers_from(found, target(site))


def backup_now(site: Site, plan: Plan, state_dir: Path, kind: str) -> BackupRun:
    """One backup of the given type into the tenant, taken by Patroni's leader."""
    if kind not in BACKUP_TYPES:
        raise UsageError(f"--type {kind}: no such backup type", "", f"use one of {BACKUP_TYPES}")
    node, _ = _leader(state_dir, _postgres_nodes(site, plan))
    done = _node_json(state_dir, node, "now", "--type", kind)
    return BackupRun(node, kind, float(done.get("seconds") or 0))


def restore_drill(site: Site, plan: Plan, state_dir: Path) -> tuple[DrillLayer, ...]:
    """Restore from the tenant into scratch space and compare with the live site."""
    node, _ = _leader(state_dir, _postgres_nodes(site, plan))
    got = _node_json(state_dir, node, "drill")
    differ = got.get("differ") or []
    detail = f"on {node}: {got.get('tables', 0)} tables compared"
    if differ:
        detail += f"; differ: {', '.join(differ[:5])}"
    if got.get("checksum", {}).get("live") != got.get("checksum", {}).get("restored"):
        detail += "; drill table checksum differs"
    return (
        DrillLayer(
            "postgres",
            bool(got.get("passed")),
            float(got.get("seconds") or 0),
            float(got["rpo_seconds"]) if got.get("rpo_seconds") is not None else None,
            detail,
        ),
    )
