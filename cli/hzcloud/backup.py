"""Backups into the site's cloud tenant and restore drills from it (`hzcloud backup|restore`).

The layers:
- `postgres`: pgBackRest base backups (full/diff/incr) in the tenant repository (repo2);
- `postgres-wal`: PostgreSQL's WAL archive there (what a restore replays past the last backup);
- `etcd-patroni`, `etcd-kubernetes`: snapshots of Patroni's and Kubernetes' etcd;
- `bucket-<name>`: copies of Ceph RGW buckets (the bundle's, and those the tenant's
  `sync_buckets` lists).

The cloud phase installs the tools the nodes run (`hz-backup`, roles/pg_backup; `hz-dr`,
roles/dr_layers): they answer in JSON; this module asks the nodes over SSH (state/ssh_config, as
Ansible does). Patroni's leader does PostgreSQL's work, each etcd cluster's leader its
snapshots, the first RGW node the bucket copies. A restore drill restores every layer from the
tenant into scratch space (never a live data directory, port or bucket) and compares it with
the live site: PostgreSQL's row counts and a checksum of the drill table, etcd's key count at
the snapshot's revision and a marker key, each bucket by `rclone check`.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hzcloud.errors import HzError, UsageError
from hzcloud.model import Role, Site, Tenant
from hzcloud.plan import Plan

TOOL = "/usr/local/sbin/hz-backup"
BACKUP_TYPES = ("full", "diff", "incr")


DR_TOOL = "/usr/local/sbin/hz-dr"


@dataclass(frozen=True)
class Layer:
    name: str
    last_good: str | None  # ISO 8601 (UTC), none when nothing is in the tenant yet
    age_seconds: float | None
    target: str
    error: str = ""  # why the tenant could not be asked ('' when it answered)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DrLayer:
    """A layer besides PostgreSQL, as the cloud phase hands it to roles/dr_layers."""

    name: str
    kind: str  # etcd | bucket
    hosts: tuple[str, ...]  # the nodes that hold it (etcd: every member; bucket: one RGW node)
    target: str
    cluster: str = ""  # etcd: patroni | kubernetes
    bucket: str = ""

    def to_vars(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "hosts": list(self.hosts),
            "target": self.target,
            "cluster": self.cluster,
            "bucket": self.bucket,
        }


@dataclass(frozen=True)
class DrillLayer:
    name: str
    passed: bool
    seconds: float
    rpo_seconds: float | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerRun:
    name: str
    node: str
    ok: bool
    seconds: float
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BackupRun:
    node: str
    kind: str
    seconds: float
    layers: tuple[LayerRun, ...] = ()

    @property
    def ok(self) -> bool:
        return all(x.ok for x in self.layers)


def _node_json(
    state_dir: Path, node: str, *args: str, timeout: float = 3600, tool: str = TOOL
) -> dict[str, Any]:
    """Run a node's backup tool over SSH; its JSON answer."""
    argv = ["ssh", "-F", str(state_dir / "ssh_config"), node, tool, *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HzError(
            f"{node}: {Path(tool).name} {' '.join(args)} took over {timeout:.0f} s", "", ""
        ) from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise HzError(
            f"{node}: {Path(tool).name} {' '.join(args)} failed (exit {proc.returncode})",
            (proc.stderr or proc.stdout).strip()[-800:],
            "run `hzcloud up SITE --only cloud` (it installs the backup tool), and check that "
            "the tenant is reachable from the gateway",
        )
    data: dict[str, Any] = json.loads(lines[-1])
    if data.get("ok") is False or "error" in data:
        raise HzError(
            f"{node}: {Path(tool).name} {' '.join(args)} failed",
            str(data.get("error", "")),
            "check the link (`hzcloud status SITE`) and the tenant's bucket",
        )
    return data


def _tenant(site: Site) -> Tenant:
    if not site.cloud.tenants:
        raise UsageError(
            "this site has no cloud tenant to back up into",
            "site.yaml cloud.tenants is empty",
            "add a tenant (see inventories/sample-hospital/site.yaml), then `hzcloud up`",
        )
    return site.cloud.tenants[0]


def _postgres_nodes(site: Site, plan: Plan) -> list[str]:
    _tenant(site)
    if not site.services.postgres.enabled:
        return []
    return [n.name for n in plan.hosts(Role.POSTGRES)]


def bundle_buckets(site: Site, site_dir: Path) -> list[str]:
    """The buckets of the bundle's services the site picks (the imaging one)."""
    if not site.bundle.services or not site.services.ceph.enabled:
        return []
    from hzcloud import bundle

    found = bundle.picked(site, bundle.bundle_for_site(site, site_dir))
    return [le.entry.needs.s3.bucket for le in found if le.entry.needs.s3 is not None]


def dr_layers(site: Site, plan: Plan, site_dir: Path) -> tuple[DrLayer, ...]:
    """The site's layers besides PostgreSQL, and the nodes that hold each."""
    if not site.cloud.tenants:
        return ()
    t = site.cloud.tenants[0]
    root = f"s3://{t.bucket_name(site.hospital.code)}/hzcloud/{site.hospital.code}/dr"
    where = f"({t.name}, encrypted)"
    out: list[DrLayer] = []
    clusters = (
        ("patroni", Role.ETCD, site.services.postgres.enabled),
        ("kubernetes", Role.K8S_SERVER, site.services.kubernetes.enabled),
    )
    for cluster, role, on in clusters:
        hosts = tuple(n.name for n in plan.hosts(role))
        if on and hosts:
            name = f"etcd-{cluster}"
            out.append(DrLayer(name, "etcd", hosts, f"{root}/etcd/{name}/ {where}", cluster))
    rgw = [n.name for n in plan.hosts(Role.CEPH_RGW)]
    if rgw and site.services.ceph.enabled:
        buckets = dict.fromkeys([*bundle_buckets(site, site_dir), *t.sync_buckets])
        for b in buckets:
            out.append(
                DrLayer(
                    f"bucket-{b}", "bucket", (rgw[0],), f"{root}/buckets/{b}/ {where}", bucket=b
                )
            )
    return tuple(out)


def _statuses(state_dir: Path, nodes: list[str]) -> dict[str, dict[str, Any] | HzError]:
    def one(node: str) -> dict[str, Any] | HzError:
        try:
            return _node_json(state_dir, node, "status", timeout=120)
        except HzError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return dict(zip(nodes, pool.map(one, nodes), strict=True))


def _leader(state_dir: Path, nodes: list[str], wait: float = 60) -> tuple[str, dict[str, Any]]:
    """Patroni's leader and its status; asked again for a while (a failover takes seconds).

    While no node answers at all, it asks for 10 s only: a cluster that is down or out of
    reach is not a failover in progress."""
    started = time.monotonic()
    while True:
        found = _statuses(state_dir, nodes)
        for node, status in found.items():
            if isinstance(status, dict) and status.get("leader"):
                return node, status
        answered = any(isinstance(s, dict) for s in found.values())
        if time.monotonic() - started > (wait if answered else min(wait, 10)):
            break
        time.sleep(3)
    causes = "; ".join(
        (f"{s.what}: {s.cause.splitlines()[-1]}" if s.cause else s.what)
        if isinstance(s, HzError)
        else f"{n}: replica"
        for n, s in found.items()
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
    problem = str(status.get("problem") or "")
    failed = float(archiver.get("last_failed_time") or 0)
    wal_problem = problem
    if not wal_problem and failed > (wal or 0):
        wal_problem = f"the newest WAL push failed {now - failed:.0f} s ago (PostgreSQL retries)"
    return (
        Layer(
            "postgres",
            _iso(last) if last else None,
            round(now - last, 1) if last else None,
            where,
            problem,
        ),
        Layer(
            "postgres-wal",
            _iso(wal) if wal else None,
            round(now - wal, 1) if wal else None,
            where,
            wal_problem,
        ),
    )


def dr_layers_from(answer: dict[str, Any]) -> tuple[Layer, ...]:
    """The DR layers' last good points from an `hz-dr status` answer."""
    now = float(answer.get("now") or time.time())
    out = []
    for x in answer.get("layers") or []:
        last = float(x["last_good"]) if x.get("last_good") else None
        out.append(
            Layer(
                str(x["name"]),
                _iso(last) if last else None,
                round(now - last, 1) if last else None,
                str(x.get("target") or ""),
                str(x.get("error") or ""),
            )
        )
    return tuple(out)


def _dr_status(state_dir: Path, layers: tuple[DrLayer, ...]) -> tuple[Layer, ...]:
    """Asked of one node holding a DR layer (any of them reads the whole site's status)."""
    nodes = list(dict.fromkeys(h for x in layers for h in x.hosts))
    causes = []
    for node in nodes:
        try:
            return dr_layers_from(_node_json(state_dir, node, "status", timeout=180, tool=DR_TOOL))
        except HzError as exc:
            causes.append(f"{node}: {exc.what} {exc.cause}".strip())
    why = "no node answered: " + "; ".join(causes)[-600:]
    return tuple(Layer(x.name, None, None, x.target, why) for x in layers)


def status(site: Site, plan: Plan, state_dir: Path) -> tuple[Layer, ...]:
    """Each layer's newest good copy in the tenant and its age, or why it could not be told."""
    pg_nodes = _postgres_nodes(site, plan)
    layers = dr_layers(site, plan, state_dir.parent)
    with ThreadPoolExecutor(max_workers=2) as pool:
        dr = pool.submit(_dr_status, state_dir, layers) if layers else None
        pg: tuple[Layer, ...] = ()
        if pg_nodes:
            try:
                _, found = _leader(state_dir, pg_nodes, wait=20)
                pg = layers_from(found, target(site))
            except HzError as exc:
                why = f"{exc.what}: {exc.cause}".strip(": ")
                pg = tuple(
                    Layer(n, None, None, target(site), why) for n in ("postgres", "postgres-wal")
                )
        return pg + (dr.result() if dr else ())


def _dr_run(
    state_dir: Path, layers: tuple[DrLayer, ...], command: str, *args: str
) -> list[tuple[str, dict[str, Any] | HzError]]:
    """`hz-dr COMMAND` on every node holding a DR layer, at the same time; each node's answer."""
    nodes = list(dict.fromkeys(h for x in layers for h in x.hosts))

    def one(node: str) -> dict[str, Any] | HzError:
        try:
            return _node_json(state_dir, node, command, *args, tool=DR_TOOL)
        except HzError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(zip(nodes, pool.map(one, nodes), strict=True))


def backup_now(site: Site, plan: Plan, state_dir: Path, kind: str) -> BackupRun:
    """Every layer into the tenant now: a PostgreSQL backup of the given type (Patroni's leader),
    an etcd snapshot per cluster (its leader's member), each bucket synced."""
    if kind not in BACKUP_TYPES:
        raise UsageError(f"--type {kind}: no such backup type", "", f"use one of {BACKUP_TYPES}")
    pg_nodes = _postgres_nodes(site, plan)
    layers = dr_layers(site, plan, state_dir.parent)
    runs: list[LayerRun] = []
    node, seconds = "", 0.0
    with ThreadPoolExecutor(max_workers=2) as pool:
        dr = pool.submit(_dr_run, state_dir, layers, "now") if layers else None
        if pg_nodes:
            t0 = time.monotonic()
            try:
                node, _ = _leader(state_dir, pg_nodes)
                done = _node_json(state_dir, node, "now", "--type", kind)
                seconds = float(done.get("seconds") or 0)
                runs.append(LayerRun("postgres", node, True, seconds))
            except HzError as exc:
                wall = round(time.monotonic() - t0, 1)
                runs.append(LayerRun("postgres", node, False, wall, f"{exc.what}: {exc.cause}"))
        for host, got in dr.result() if dr else []:
            if isinstance(got, HzError):
                mine = [x.name for x in layers if host in x.hosts]
                runs += [LayerRun(n, host, False, 0.0, f"{got.what}: {got.cause}") for n in mine]
                continue
            for x in got.get("layers") or []:
                if x.get("skipped"):
                    continue
                runs.append(
                    LayerRun(
                        str(x["name"]),
                        host,
                        bool(x.get("ok")),
                        float(x.get("seconds") or 0),
                        str(x.get("error") or ""),
                    )
                )
    order = {n: i for i, n in enumerate(["postgres", *(x.name for x in layers)])}
    runs.sort(key=lambda r: order.get(r.name, len(order)))
    return BackupRun(node, kind, seconds, tuple(runs))


def _pg_drill(state_dir: Path, nodes: list[str], to: str | None) -> DrillLayer:
    t0 = time.monotonic()
    try:
        node, _ = _leader(state_dir, nodes)
        got = _node_json(state_dir, node, "drill", *(["--to", to] if to else []))
    except HzError as exc:
        wall = round(time.monotonic() - t0, 1)
        return DrillLayer("postgres", False, wall, None, f"{exc.what}: {exc.cause}")
    differ = got.get("differ") or []
    detail = f"on {node}: {got.get('tables', 0)} tables compared"
    if to:
        detail = (
            f"on {node}: to {got.get('to')}: drill-table rows up to it "
            f"{got.get('rows_before_restored')}/{got.get('rows_before')} back, rows after it "
            f"{got.get('rows_after_restored')}/{got.get('rows_after')} back"
        )
    if differ:
        detail += f"; differ: {', '.join(differ[:5])}"
    if got.get("checksum", {}).get("live") != got.get("checksum", {}).get("restored"):
        detail += "; drill table checksum differs"
    if got.get("error"):
        detail += f"; {got['error']}"
    return DrillLayer(
        "postgres",
        bool(got.get("passed")),
        float(got.get("seconds") or 0),
        float(got["rpo_seconds"]) if got.get("rpo_seconds") is not None else None,
        detail,
    )


def restore_drill(
    site: Site, plan: Plan, state_dir: Path, to: str | None = None
) -> tuple[DrillLayer, ...]:
    """Restore every layer from the tenant into scratch space and compare with the live site.
    With `to` (ISO 8601): PostgreSQL only, to that point in time."""
    pg_nodes = _postgres_nodes(site, plan)
    layers = () if to else dr_layers(site, plan, state_dir.parent)
    # the layers' drills run at the same time, each on its own node's scratch space
    with ThreadPoolExecutor(max_workers=2) as pool:
        dr = pool.submit(_dr_run, state_dir, layers, "drill") if layers else None
        out = [_pg_drill(state_dir, pg_nodes, to)] if pg_nodes else []
        answers = dr.result() if dr else []
    found: dict[str, DrillLayer] = {}
    for host, got in answers:
        if isinstance(got, HzError):
            for x in layers:
                if host in x.hosts and x.name not in found:
                    found[x.name] = DrillLayer(x.name, False, 0.0, None, f"{got.what}: {got.cause}")
            continue
        for x in got.get("layers") or []:
            if x.get("skipped"):
                continue
            rpo = x.get("rpo_seconds")
            found[str(x["name"])] = DrillLayer(
                str(x["name"]),
                bool(x.get("passed")),
                float(x.get("seconds") or 0),
                float(rpo) if rpo is not None else None,
                str(x.get("detail") or ""),
            )
    for x in layers:  # a layer no node restored (e.g. no leader answered) did not pass
        out.append(found.get(x.name) or DrillLayer(x.name, False, 0.0, None, "no node restored it"))
    return tuple(out)
