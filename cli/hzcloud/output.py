"""The `--output` choice every command offers (its own module: the CLI's start imports no printer)."""

from __future__ import annotations

from enum import StrEnum


class Output(StrEnum):
    text = "text"
    json = "json"
