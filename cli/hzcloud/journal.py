"""The journal: every phase's start, end, outcome, changes and timings, in state/journal.jsonl."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_FILE = "journal.jsonl"
# ~200 bytes a record, ~10 records a run: years of runs
JOURNAL_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class PhaseRecord:
    run: str
    phase: str
    status: str  # running | ok | failed | skipped
    started: float
    ended: float | None = None
    changed: int = 0
    seconds: float = 0.0
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: dict[str, str] = field(default_factory=dict)
    plan_hash: str = ""
    # what changed, as "host: task" (Pulumi: "pulumi: create <type> <name>"), in order
    changes: list[str] = field(default_factory=list)


def status_view(record: PhaseRecord) -> dict[str, Any]:
    """A phase as `hzcloud status --output json` (and `fleet status`) lists it."""
    return {
        "name": record.phase,
        "status": record.status,
        "changed": record.changed,
        "seconds": record.seconds,
        "run": record.run,
        "ended": record.ended,
        "error": record.error or None,
    }


def _path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_FILE


def append(state_dir: Path, record: PhaseRecord) -> None:
    """Append one record; a line is written whole or not at all (O_APPEND, one write)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(record), sort_keys=True) + "\n"
    fd = os.open(_path(state_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def records(state_dir: Path) -> list[PhaseRecord]:
    from hzcloud.siteyaml import read_in_folder

    path = _path(state_dir)
    if not os.path.lexists(path):
        return []
    # a regular file of the site folder only: a FIFO or a link to /dev/zero must not hang status
    data_bytes, _ = read_in_folder(path, JOURNAL_MAX_BYTES, links=False, kind="the journal")
    out = []
    for line in data_bytes.decode(errors="replace").splitlines():
        try:
            data: dict[str, Any] = json.loads(line)
            out.append(PhaseRecord(**data))
        except (ValueError, TypeError):
            continue  # a torn last line after a crash: ignore it
    return out


def latest(state_dir: Path) -> dict[str, PhaseRecord]:
    """The newest record of each phase."""
    out: dict[str, PhaseRecord] = {}
    for rec in records(state_dir):
        out[rec.phase] = rec
    return out


def last_run(state_dir: Path) -> list[PhaseRecord]:
    """Final records of the newest run (one per phase, newest wins)."""
    recs = records(state_dir)
    if not recs:
        return []
    run = recs[-1].run
    final: dict[str, PhaseRecord] = {}
    for rec in recs:
        if rec.run == run:
            final[rec.phase] = rec
    return list(final.values())


def resume_point(state_dir: Path, plan_hash: str) -> set[str]:
    """Phases already done in an unfinished run of the same plan: `up` skips them.

    A run is unfinished when one of its phases failed or never ended (the process died).
    A finished run, or a changed plan, resumes nothing: every phase runs (and a converged
    site reports zero changes).
    """
    run = last_run(state_dir)
    if not run or any(r.plan_hash != plan_hash for r in run):
        return set()
    if all(r.status in ("ok", "skipped") for r in run):
        return set()
    return {r.phase for r in run if r.status in ("ok", "skipped")}


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
