"""Where the shipped playbooks, templates and stacks are: in the wheel or the source tree."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def resource(name: str) -> Path:
    """A shipped folder (playbooks, templates, stacks, inventories)."""
    # in the wheel they sit inside the package; in a checkout, two levels up (cli/hzcloud/..)
    for base in (_PKG, _PKG.parents[1]):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"hzcloud is missing its {name}/ folder (looked in {_PKG})")
