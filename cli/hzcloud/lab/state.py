"""Runtime records of a lab in <site>/state/lab/, so down/status work from any process."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class LabState:
    """The lab's records (PIDs, mounts, loop devices, links), saved after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self.data.setdefault("nodes", {})

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self.data.get(key, default)

    def node(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.data["nodes"].get(name, {}))

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
            self._save()

    def set_node(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.data["nodes"].setdefault(name, {}).update(fields)
            self._save()

    def drop_node(self, name: str) -> None:
        with self._lock:
            self.data["nodes"].pop(name, None)
            self._save()

    def remove(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)
            self.data = {"nodes": {}}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
