"""The lab: the site's servers as systemd-nspawn machines on this host (tests, demo, CI).

The provider is imported on first use: `hzcloud --help` and the commands that never touch a
lab do not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(name)
    module = "hzcloud.lab.errors" if name == "LabError" else "hzcloud.lab.provider"
    return getattr(importlib.import_module(module), name)
