"""The testinfra executor: verify, the checks of every phase that has completed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hzcloud import journal
from hzcloud.executors import RunContext
from hzcloud.outcome import Check, Event, Failure, OnEvent, PhaseResult

if TYPE_CHECKING:
    from hzcloud.phases import Phase


def run(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    from hzcloud.verify import run_checks

    started = time.monotonic()
    done = {n for n, r in journal.latest(ctx.state_dir).items() if r.status in ("ok", "skipped")}
    checks = run_checks(ctx.plan, ctx.state_dir, done, site=ctx.site)
    for c in checks:
        said = c.detail if c.passed else _why(c)
        on_event(Event(phase.name, "ok" if c.passed else "failed", c.host, c.name, said))
    fails = tuple(Failure(c.host, c.name, _why(c)) for c in checks if not c.passed)
    return PhaseResult(phase.name, not fails, 0, time.monotonic() - started, failures=fails)


def _why(check: Check) -> str:
    """What a failed check saw (and what it wanted, where the check says)."""
    return f"expected {check.expected}, seen {check.detail}" if check.expected else check.detail
