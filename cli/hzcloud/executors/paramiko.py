"""The paramiko executor: preflight, every server at once over SSH."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from hzcloud.executors import RunContext
from hzcloud.outcome import Event, Failure, OnEvent, PhaseResult

if TYPE_CHECKING:
    from hzcloud.phases import Phase


def run(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    from hzcloud.preflight import run_preflight

    started = time.monotonic()
    found = run_preflight(ctx.site, ctx.plan, ctx.site_dir, ctx.state_dir)
    for f in found:
        if f.blocking:
            on_event(Event(phase.name, "failed", f.host, f.check, f.detail))
    fails = tuple(Failure(f.host, f.check, f.detail) for f in found if f.blocking)
    return PhaseResult(
        phase.name,
        not fails,
        0,
        time.monotonic() - started,
        failures=fails,
        findings=tuple(asdict(f) for f in found),
    )
