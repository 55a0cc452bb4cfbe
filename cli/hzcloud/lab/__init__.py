"""The lab: the site's servers as systemd-nspawn machines on this host (tests, demo, CI)."""

from hzcloud.lab.errors import LabError
from hzcloud.lab.provider import (
    LabEvent,
    LabResult,
    NodeStatus,
    OnEvent,
    cut,
    down,
    heal,
    kill,
    preview_down,
    preview_up,
    ssh_argv,
    status,
    up,
)

__all__ = [
    "LabError",
    "LabEvent",
    "LabResult",
    "NodeStatus",
    "OnEvent",
    "cut",
    "down",
    "heal",
    "kill",
    "preview_down",
    "preview_up",
    "ssh_argv",
    "status",
    "up",
]
