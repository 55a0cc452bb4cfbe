"""bundle: the clinical services on the cluster, their state in PostgreSQL, Redis and S3."""

from __future__ import annotations

from hzcloud.phases import Phase

PHASE = Phase(
    name="bundle",
    description="clinical services",
    executor="pulumi",
    depends_on=("storage", "data", "kubernetes", "cloud"),
    wanted=lambda site: bool(site.bundle.services),
    unavailable="not available yet: this build has no clinical service bundle",
)
