"""data: PostgreSQL HA (Patroni on etcd, a VIP for writes) and Redis HA (Sentinel)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hzcloud.phases import Endpoint, Phase, Port
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
                f"postgresql://{hosts}/postgres?sslmode=verify-ca&target_session_attrs=read-write",
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
)
