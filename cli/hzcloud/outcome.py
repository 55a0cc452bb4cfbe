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

    @property
    def stopped(self) -> bool:
        """Stopped by the operator, with nothing failed."""
        statuses = {r.status for r in self.records}
        return "stopped" in statuses and "failed" not in statuses


@dataclass(frozen=True)
class DryRun:
    """What `up` would run, what it would miss, and what this build cannot run (and why)."""

    phases: tuple[Phase, ...]
    missing: tuple[Need, ...]
    unavailable: tuple[tuple[str, str], ...]
    unwritable: tuple[str, str] | None = None  # (what, fix): `up` could not write the site folder


@dataclass(frozen=True)
class Check:
    """One check on one host: what it expected and what it saw (detail), both plain text."""

    name: str
    host: str
    passed: bool
    detail: str
    expected: str = ""

    @property
    def seen(self) -> str:
        return self.detail

    def line(self) -> str:
        """One readable line: host, check, expected, seen."""
        if self.passed:
            return f"{self.host}: {self.name}: {self.detail}"
        return (
            f"{self.host}: {self.name}: expected {self.expected or 'to pass'}, seen {self.detail}"
        )

    def to_dict(self) -> dict[str, Any]:
        # "name" stays for readers of the first format; "check" is the same value
        return {
            "host": self.host,
            "check": self.name,
            "name": self.name,
            "passed": self.passed,
            "expected": self.expected,
            "seen": self.detail,
        }


def said(exc: BaseException) -> str:
    """What a failed remote command said, in words (never a Python repr of testinfra objects)."""
    arg: Any = exc.args[0] if exc.args else None
    # testinfra's ssh backend raises RuntimeError(CommandResult) when ssh itself fails
    if arg is not None and hasattr(arg, "rc") and hasattr(arg, "stderr"):
        lines = [ln for ln in str(arg.stderr or arg.stdout or "").splitlines() if ln.strip()]
        return f"exit {arg.rc}: {lines[-1].strip()[:200]}" if lines else f"exit {arg.rc}"
    # testinfra's run_expect: "Unexpected exit code 4 for CommandResult(backend=<...>, ...)"
    text = str(exc).split(" for CommandResult(", 1)[0].strip()
    return (text.splitlines()[0][:200] if text else "") or type(exc).__name__


def names_of(names: list[str]) -> str:
    return ", ".join(names) or "none"
