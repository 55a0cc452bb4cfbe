"""storage: Ceph (mons, mgrs, one OSD per disk, RBD pool, RGW for S3)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzcloud.outcome import Check, names_of
from hzcloud.phases import CheckContext, Endpoint, Phase, Port

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

RGW_PORT = 7480


def _endpoints(site: Site, plan: Plan, site_dir: Path) -> list[Endpoint]:
    return [
        Endpoint("s3", f"http://{n.address}:{RGW_PORT}", note=f"keys: {site_dir}/ceph/s3-*.yml")
        for n in plan.hosts("ceph-rgw")
    ]


def _checks(ctx: CheckContext) -> list[Check]:
    """Ceph: health (a minute to settle), mon quorum, every OSD up and in; each RGW answers."""
    hosts, plan = ctx.hosts, ctx.plan
    out: list[Check] = []
    if plan.hosts("ceph-mon"):
        first = plan.hosts("ceph-mon")[0].name
        res = hosts[first].run("ceph status -f json")
        try:
            st = json.loads(res.stdout)
            health = _ceph_health(st)
            if health != "HEALTH_OK":
                # Right after a deploy or a restart a warning can be passing (slow ops, peering):
                # give the cluster a minute to settle and say what was seen.
                seen, started = health, time.monotonic()
                while time.monotonic() - started < CEPH_SETTLE_SECONDS and health != "HEALTH_OK":
                    time.sleep(3)
                    st = json.loads(hosts[first].run("ceph status -f json").stdout)
                    health = _ceph_health(st)
                if health == "HEALTH_OK":
                    health = f"HEALTH_OK after {time.monotonic() - started:.0f} s (was {seen})"
            quorum = st.get("quorum_names", [])
            osdmap = st["osdmap"].get("osdmap", st["osdmap"])
            osds = (osdmap["num_osds"], osdmap["num_up_osds"], osdmap["num_in_osds"])
            out.append(
                Check("ceph health", first, health.startswith("HEALTH_OK"), health, "HEALTH_OK")
            )
            out.append(
                Check(
                    "ceph mon quorum",
                    first,
                    len(quorum) == len(plan.hosts("ceph-mon")),
                    f"in quorum: {names_of(quorum)}",
                    f"all {len(plan.hosts('ceph-mon'))} mons in quorum",
                )
            )
            out.append(
                Check(
                    "ceph osds up and in",
                    first,
                    osds[0] > 0 and osds[0] == osds[1] == osds[2],
                    f"{osds[0]} osds, {osds[1]} up, {osds[2]} in",
                    "every OSD up and in",
                )
            )
        except (ValueError, KeyError, TypeError):
            out.append(
                Check(
                    "ceph health",
                    first,
                    False,
                    f"no status: {(res.stderr or res.stdout).strip()[:200]}",
                    "HEALTH_OK",
                )
            )
        for node in plan.hosts("ceph-rgw"):
            res = hosts[node.name].run(
                "python3 -c 'import urllib.request;"
                f'print(urllib.request.urlopen("http://127.0.0.1:{RGW_PORT}",timeout=5).status)\''
            )
            out.append(
                Check(
                    "S3 endpoint answers",
                    node.name,
                    res.stdout.strip() == "200",
                    f"http://{node.address}:{RGW_PORT} -> "
                    + (
                        res.stdout.strip()
                        or (res.stderr.strip().splitlines() or ["no answer"])[-1][:100]
                    ),
                    f"HTTP 200 from http://{node.address}:{RGW_PORT}",
                )
            )
    return out


# How long `verify` waits for a Ceph warning to clear by itself before it fails the check.
CEPH_SETTLE_SECONDS = 60


def _ceph_health(status: dict[str, Any]) -> str:
    """'HEALTH_OK', or the status with each check's code and message ('HEALTH_WARN: SLOW_OPS …')."""
    health = status["health"]
    checks = health.get("checks") or {}
    if health["status"] == "HEALTH_OK" or not checks:
        return str(health["status"])
    named = "; ".join(
        f"{code} {c.get('summary', {}).get('message', '')}".strip() for code, c in checks.items()
    )
    return f"{health['status']}: {named}"


PHASE = Phase(
    name="storage",
    description="Ceph mons, mgrs, OSDs, RBD pool, RGW",
    executor="ansible",
    depends_on=("base",),
    roles=("ceph-mon", "ceph-mgr", "ceph-osd", "ceph-rgw"),
    ports=(
        Port("ceph_mon_v2", 3300, "ceph-mon", owners=("ceph-mon",)),
        Port("ceph_mon_v1", 6789, "ceph-mon", owners=("ceph-mon",)),
        Port("ceph_mgr", "6800-7300", "ceph-mgr"),
        Port("ceph_osd", "6800-7300", "ceph-osd"),
        Port("ceph_rgw", RGW_PORT, "ceph-rgw", reach="management", owners=("radosgw",)),
    ),
    wanted=lambda site: site.services.ceph.enabled,
    endpoints=_endpoints,
    checks=_checks,
)
