"""What running phases produces: progress events and results. Shared by executors, the engine
and report (which imports nothing else of the engine)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hzcloud.journal import PhaseRecord

if TYPE_CHECKING:
    from hzcloud.phases import Need
    from hzcloud.plan import Phase


@dataclass(frozen=True)
class Event:
    """Progress of a phase: a task started or finished on a host."""

    phase: str
    # task | ok | changed | failed | unreachable | skipped | message | phase-start | phase-end
    kind: str
    host: str = ""
    task: str = ""
    detail: str = ""


OnEvent = Callable[[Event], None]


@dataclass(frozen=True)
class Failure:
    host: str
    task: str
    message: str


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    ok: bool
    changed: int
    seconds: float
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: tuple[Failure, ...] = ()
    # what the phase found that is worth showing (preflight's findings), as plain dicts
    findings: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class UpResult:
    run: str
    records: tuple[PhaseRecord, ...]
    findings: tuple[dict[str, Any], ...]
    failures: tuple[Failure, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.status in ("ok", "skipped") for r in self.records)


@dataclass(frozen=True)
class DryRun:
    """What `up` would run, what it would miss, and what this build cannot run (and why)."""

    phases: tuple[Phase, ...]
    missing: tuple[Need, ...]
    unavailable: tuple[tuple[str, str], ...]
