"""preflight: every server checked over SSH, in parallel, before anything changes anywhere."""

from __future__ import annotations

from hzcloud.phases import Phase, Port

PHASE = Phase(
    name="preflight",
    description="reachability, OS, resources, clock, ports, free disks",
    executor="paramiko",
    # SSH stays open from anywhere: it is how hzcloud reaches the servers (keys only).
    ports=(Port("ssh", 22, "all", reach="any"),),
)
