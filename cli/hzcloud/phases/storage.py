"""storage: Ceph (mons, mgrs, one OSD per disk, RBD pool, RGW for S3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hzcloud.phases import Endpoint, Phase, Port

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

RGW_PORT = 7480


def _endpoints(site: Site, plan: Plan, site_dir: Path) -> list[Endpoint]:
    return [
        Endpoint("s3", f"http://{n.address}:{RGW_PORT}", note=f"keys: {site_dir}/ceph/s3-*.yml")
        for n in plan.hosts("ceph-rgw")
    ]


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
)
