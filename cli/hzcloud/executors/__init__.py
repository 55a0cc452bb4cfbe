"""Executors: run one phase, stream its events, return its result. Only they touch hosts.

One interface, `run(phase, ctx, on_event) -> PhaseResult`; the engine calls `run_phase`, which
picks the executor the phase names. Each executor module is imported when a phase needs it
(ansible-runner, paramiko, testinfra and pulumi are slow to import and `plan` needs none).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hzcloud.outcome import Event, Failure, OnEvent, PhaseResult

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.phases import Phase
    from hzcloud.plan import Plan

__all__ = ["Event", "Failure", "OnEvent", "PhaseResult", "RunContext", "run_phase"]


@dataclass(frozen=True)
class RunContext:
    """What an executor gets besides its phase: the loaded site and where its state lives."""

    site: Site
    plan: Plan
    site_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.site_dir / "state"


class Executor(Protocol):
    def __call__(self, phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult: ...


def run_phase(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    """Run a phase with the executor it names (hzcloud.executors.<executor>.run)."""
    if phase.run is not None:
        return phase.run(phase, ctx, on_event)
    module = importlib.import_module(f"hzcloud.executors.{phase.executor}")
    executor: Executor = module.run
    return executor(phase, ctx, on_event)
