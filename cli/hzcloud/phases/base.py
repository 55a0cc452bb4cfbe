"""base: what every server needs before any service (Ansible role base)."""

from __future__ import annotations

from hzcloud.phases import Phase, Port

PHASE = Phase(
    name="base",
    description="hostnames, hosts, chrony, sysctl, packages, firewall, SSH",
    executor="ansible",
    depends_on=("preflight",),
    # the first server serves time to the rest when the site names no NTP servers
    ports=(Port("ntp", 123, "time-server", reach="management", proto="udp"),),
)
