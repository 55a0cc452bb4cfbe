"""data: PostgreSQL HA (Patroni on etcd, a VIP for writes) and Redis HA (Sentinel)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzcloud.outcome import Check, names_of
from hzcloud.phases import CheckContext, Endpoint, Phase, Port
from hzcloud.pki import ca_cert_path

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

POSTGRES_PORT = 5432
SENTINEL_PORT = 26379


def redis_master_name(site_code: str) -> str:
    """The name Sentinel knows the Redis primary by."""
    return f"{site_code}-redis"


def _endpoints(site: Site, plan: Plan, site_dir: Path) -> list[Endpoint]:
    out = []
    ca = str(ca_cert_path(site_dir))
    if site.services.postgres.enabled and plan.hosts("postgres"):
        if site.networks.postgres_vip:
            hosts = f"{site.networks.postgres_vip}:{POSTGRES_PORT}"
            note = "the VIP follows the leader"
        else:
            hosts = ",".join(f"{n.address}:{POSTGRES_PORT}" for n in plan.hosts("postgres"))
            note = "no VIP: clients list every member"
        out.append(
            Endpoint(
                "postgres",
                # verify-full: the VIP and each member's own address are in every server certificate
                f"postgresql://{hosts}/postgres?sslmode=verify-full&target_session_attrs=read-write",
                ca,
                note,
            )
        )
    if site.services.redis.enabled and plan.hosts("redis-sentinel"):
        sentinels = ",".join(f"{n.address}:{SENTINEL_PORT}" for n in plan.hosts("redis-sentinel"))
        out.append(
            Endpoint(
                "redis",
                f"redis+sentinel://{sentinels}/{redis_master_name(plan.site)}",
                note="password: redis_password in secrets.yaml",
            )
        )
    return out


def _checks(ctx: CheckContext) -> list[Check]:
    """Patroni: one leader, replicas streaming, a sync standby; Redis: Sentinel quorum, replicas."""
    hosts, plan, secrets = ctx.hosts, ctx.plan, ctx.secrets
    out: list[Check] = []
    if plan.hosts("postgres"):
        out += _patroni_checks(hosts, plan)
    if plan.hosts("redis-sentinel"):
        first = plan.hosts("redis-sentinel")[0].name
        pw = shlex.quote(secrets.get("redis_password", ""))
        master = redis_master_name(plan.site)
        res = hosts[first].run(
            f"REDISCLI_AUTH={pw} redis-cli -p {SENTINEL_PORT} sentinel ckquorum {master}"
        )
        out.append(
            Check(
                "sentinel quorum",
                first,
                res.stdout.startswith("OK"),
                (res.stdout or res.stderr).strip()[:200] or f"exit {res.rc}, no output",
                "OK from sentinel ckquorum",
            )
        )
        if plan.hosts("redis"):
            out.append(_redis_replicas_check(hosts[first], first, master, pw, plan))
    return out


def _redis_replicas_check(host: Any, name: str, master: str, pw: str, plan: Plan) -> Check:
    """Every other Redis host is a replica of the primary the Sentinels name, its link up."""
    res = host.run(f"REDISCLI_AUTH={pw} redis-cli -p {SENTINEL_PORT} sentinel replicas {master}")
    # redis-cli prints one field per line off a terminal: name, value, ...; each replica starts
    # with its "name" field.
    lines = res.stdout.splitlines()
    replicas: list[dict[str, str]] = []
    for key, value in zip(lines[::2], lines[1::2], strict=False):
        if key == "name":
            replicas.append({})
        if replicas:
            replicas[-1][key] = value
    ok = [
        r["ip"]
        for r in replicas
        if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
    ]
    want = len(plan.hosts("redis")) - 1
    return Check(
        "redis primary + replicas",
        name,
        res.rc == 0 and len(ok) == want,
        f"{len(ok)} of {want} replicas linked: {names_of(ok)}"
        + (
            "; others: "
            + ", ".join(
                f"{r.get('ip')} ({r.get('flags')})" for r in replicas if r.get("ip") not in ok
            )
            if len(replicas) > len(ok)
            else ""
        ),
        f"{want} replicas linked to the primary",
    )


PATRONICTL = "patronictl -c /etc/patroni/config.yml list -f json"


def _patroni_checks(hosts: dict[str, Any], plan: Plan) -> list[Check]:
    """One leader, the rest replicas that the leader sees streaming (pg_stat_replication)."""
    members_hosts = plan.hosts("postgres")
    first = members_hosts[0].name
    res = hosts[first].run(PATRONICTL)
    try:
        members = json.loads(res.stdout)
    except ValueError:
        return [
            Check(
                "patroni leader + streaming replicas",
                first,
                False,
                f"patronictl failed: {(res.stderr or res.stdout).strip()[:200]}",
                f"one leader, {len(members_hosts) - 1} replicas",
            )
        ]
    leaders = [m["Member"] for m in members if m.get("Role") == "Leader"]
    replicas = [m["Member"] for m in members if m.get("Role") in ("Replica", "Sync Standby")]
    out = [
        Check(
            "patroni leader + replicas",
            first,
            len(leaders) == 1 and len(replicas) == len(members_hosts) - 1,
            f"leader {names_of(leaders)}, replicas {names_of(replicas)}",
            f"one leader, {len(members_hosts) - 1} replicas",
        )
    ]
    if len(leaders) == 1 and leaders[0] in hosts:
        sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        res = hosts[leaders[0]].run(f"runuser -u postgres -- psql -XAtc {shlex.quote(sql)}")
        n = int(res.stdout.strip()) if res.stdout.strip().isdigit() else -1
        out.append(
            Check(
                "patroni leader + streaming replicas",
                leaders[0],
                n == len(members_hosts) - 1,
                f"{n} replicas streaming from {leaders[0]}" if n >= 0 else res.stderr.strip()[:200],
                f"{len(members_hosts) - 1} replicas streaming",
            )
        )
        out.append(_sync_check(hosts[leaders[0]], leaders[0], len(members_hosts) - 1))
    return out


SYNC_SQL = (
    "SELECT current_setting('synchronous_standby_names'),"
    " (SELECT string_agg(application_name, ',') FROM pg_stat_replication WHERE sync_state = 'sync')"
)


def _sync_check(host: Any, leader: str, replicas: int) -> Check:
    """With Patroni's synchronous_mode on, the leader names a replica in synchronous_standby_names
    and pg_stat_replication shows it "sync": a commit is acknowledged only once a replica has it."""
    cfg = host.run("patronictl -c /etc/patroni/config.yml show-config")
    if cfg.rc != 0:
        return Check(
            "synchronous replication on",
            leader,
            False,
            cfg.stderr.strip()[:200],
            "patronictl show-config answers",
        )
    if "synchronous_mode: true" not in cfg.stdout.splitlines():
        return Check(
            "synchronous replication on",
            leader,
            True,
            "synchronous_mode off by the site",
            "synchronous_mode as the site says",
        )
    res = host.run(f"runuser -u postgres -- psql -XAt -F '|' -c {shlex.quote(SYNC_SQL)}")
    names, _, sync = res.stdout.strip().partition("|")
    return Check(
        "synchronous replication on",
        leader,
        res.rc == 0 and ((bool(names) and bool(sync)) or replicas == 0),
        f"synchronous_standby_names = {names!r}, sync replicas: {sync or 'none'}"
        if res.rc == 0
        else res.stderr.strip()[:200],
        "a sync standby named and streaming",
    )


PHASE = Phase(
    name="data",
    description="PostgreSQL HA (Patroni, etcd) and Redis HA (Sentinel)",
    executor="ansible",
    depends_on=("base",),
    roles=("etcd", "postgres", "redis", "redis-sentinel"),
    ports=(
        Port("etcd_client", 2379, "etcd", owners=("etcd",)),
        Port("etcd_peer", 2380, "etcd", owners=("etcd",)),
        Port("postgres", POSTGRES_PORT, "postgres", "management", owners=("postgres", "patroni")),
        Port("patroni", 8008, "postgres", owners=("patroni", "python3")),
        Port("redis", 6379, "redis", "management", owners=("redis-server",)),
        Port(
            "sentinel",
            SENTINEL_PORT,
            "redis-sentinel",
            "management",
            owners=("redis-sentinel", "redis-server"),
        ),
    ),
    services={
        "etcd": ("etcd",),
        "postgres": ("patroni",),
        "redis": ("redis-server",),
        "redis-sentinel": ("redis-sentinel",),
    },
    wanted=lambda site: site.services.postgres.enabled or site.services.redis.enabled,
    endpoints=_endpoints,
    checks=_checks,
)
