"""verify: the checks that prove the site works (testinfra over the rendered SSH config)."""

from __future__ import annotations

from hzcloud.phases import Phase

PHASE = Phase(
    name="verify",
    description="checks that prove the site works",
    executor="testinfra",
    depends_on=("storage", "data", "kubernetes", "ingress", "platform", "cloud", "bundle"),
)
