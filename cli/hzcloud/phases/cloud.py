"""cloud: the public-cloud tenant side, the site-to-site link and disaster recovery."""

from __future__ import annotations

from hzcloud.phases import Phase

PHASE = Phase(
    name="cloud",
    description="public-cloud tenant side and site-to-site WireGuard",
    executor="pulumi",
    depends_on=("base",),
    roles=("gateway",),
    wanted=lambda site: bool(site.cloud.tenants),
    unavailable="not available yet: this build has no cloud phase (tenant side, link, DR)",
)
