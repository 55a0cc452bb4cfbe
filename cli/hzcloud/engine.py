"""`hzcloud up`: render, then run the plan's phases as a graph, journaling every step."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from hzcloud import journal
from hzcloud.errors import HzError, UsageError
from hzcloud.executors import Event, Failure, PhaseResult, playbook_for, run_ansible
from hzcloud.model import Site, load_site, site_file
from hzcloud.plan import Phase, Plan, plan_site
from hzcloud.preflight import Finding, run_preflight
from hzcloud.render import Rendered, render


@dataclass(frozen=True)
class Loaded:
    site: Site
    plan: Plan
    site_dir: Path


def load(path: Path) -> Loaded:
    site = load_site(path)
    return Loaded(site, plan_site(site), site_file(path).parent.resolve())


def plan_hash(plan: Plan) -> str:
    return hashlib.sha256(plan.to_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UpResult:
    run: str
    records: tuple[journal.PhaseRecord, ...]
    findings: tuple[Finding, ...]
    failures: tuple[Failure, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.status in ("ok", "skipped") for r in self.records)


def _available(phase: Phase) -> str:
    """Why a phase cannot run in this build, or '' when it can."""
    if phase.executor == "ansible" and not playbook_for(phase.name).exists():
        return f"no playbook {playbook_for(phase.name).name} in this build"
    if phase.executor == "pulumi":
        return "the Pulumi phases need the artifacts folder (pulumi CLI and plugins), not found"
    return ""


def select_phases(plan: Plan, only: list[str] | None, state_dir: Path) -> list[Phase]:
    """The phases to run, refusing a phase whose prerequisites have not completed."""
    names = [p.name for p in plan.phases]
    if only is None:
        chosen = list(plan.phases)
    else:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise UsageError(
                f"unknown phase {', '.join(unknown)}",
                "this site's plan has no such phase (a switched-off service has none)",
                f"choose from: {', '.join(names)}",
            )
        chosen = [p for p in plan.phases if p.name in only]
    unavailable = [(p.name, why) for p in chosen if (why := _available(p))]
    if unavailable:
        runnable = [p.name for p in chosen if not _available(p)]
        raise UsageError(
            "; ".join(f"phase {n}: {why}" for n, why in unavailable),
            "nothing was changed",
            "switch those services off in site.yaml"
            + (f", or run the others with --only {','.join(runnable)}" if runnable else ""),
        )
    done = {n for n, r in journal.latest(state_dir).items() if r.status in ("ok", "skipped")}
    chosen_names = {p.name for p in chosen}
    for p in chosen:
        if p.name == "verify":
            continue  # verify checks whatever has been deployed
        missing = [d for d in p.depends_on if d not in chosen_names and d not in done]
        if missing:
            raise UsageError(
                f"phase {p.name} needs {', '.join(missing)}, which has not completed",
                "phases run in dependency order",
                f"run `hzcloud up --only {','.join([*missing, p.name])}` or plain `hzcloud up`",
            )
    return chosen


Reporter = Callable[[Event], None]


def up(loaded: Loaded, only: list[str] | None, on_event: Reporter) -> UpResult:
    """Converge the site: phases whose prerequisites are met run at the same time."""
    t0 = time.monotonic()
    rendered: Rendered = render(loaded.site, loaded.plan, loaded.site_dir)
    state = rendered.state_dir
    phases = select_phases(loaded.plan, only, state)
    phash = plan_hash(loaded.plan)
    resumed = journal.resume_point(state, phash)
    run_id = journal.new_run_id()
    records: dict[str, journal.PhaseRecord] = {}
    findings: list[Finding] = []
    failures: list[Failure] = []
    by_name = {p.name: p for p in phases}
    pending = [p.name for p in phases]
    for name in list(pending):
        if name in resumed and name not in ("preflight", "verify"):
            rec = journal.PhaseRecord(
                run_id,
                name,
                "skipped",
                time.time(),
                time.time(),
                plan_hash=phash,
                error={"note": "done in the interrupted run; resuming after it"},
            )
            journal.append(state, rec)
            records[name] = rec
            pending.remove(name)
            on_event(Event(name, "phase-skipped", detail="done before; resuming"))

    def run_one(phase: Phase) -> PhaseResult:
        start = time.time()
        journal.append(
            state, journal.PhaseRecord(run_id, phase.name, "running", start, plan_hash=phash)
        )
        on_event(Event(phase.name, "phase-start"))
        try:
            if phase.executor == "paramiko":
                found = run_preflight(loaded.site, loaded.plan, loaded.site_dir, state)
                findings.extend(found)
                for f in found:
                    if f.blocking:
                        on_event(Event(phase.name, "failed", f.host, f.check, f.detail))
                fails = tuple(Failure(f.host, f.check, f.detail) for f in found if f.blocking)
                result = PhaseResult(phase.name, not fails, 0, time.time() - start, {}, fails)
            elif phase.executor == "testinfra":
                from hzcloud.verify import run_checks

                checks = run_checks(loaded.plan, state, deployed=set(done_names()))
                fails = tuple(Failure(c.host, c.name, c.detail) for c in checks if not c.passed)
                for c in checks:
                    on_event(
                        Event(phase.name, "ok" if c.passed else "failed", c.host, c.name, c.detail)
                    )
                result = PhaseResult(phase.name, not fails, 0, time.time() - start, {}, fails)
            else:
                result = run_ansible(phase.name, state, on_event)
        except HzError as exc:
            result = PhaseResult(
                phase.name,
                False,
                0,
                time.time() - start,
                {},
                (Failure("", "", f"{exc.what}: {exc.cause}"),),
            )
        first = result.failures[0] if result.failures else None
        rec = journal.PhaseRecord(
            run_id,
            phase.name,
            "ok" if result.ok else "failed",
            start,
            time.time(),
            result.changed,
            round(result.seconds, 2),
            result.hosts,
            {"host": first.host, "task": first.task, "message": first.message} if first else {},
            phash,
        )
        journal.append(state, rec)
        records[phase.name] = rec
        on_event(Event(phase.name, "phase-end", detail="ok" if result.ok else "failed"))
        return result

    def done_names() -> list[str]:
        return [n for n, r in journal.latest(state).items() if r.status in ("ok", "skipped")]

    running: dict[Future[PhaseResult], str] = {}
    stop = False
    with ThreadPoolExecutor(max_workers=4) as pool:
        while pending or running:
            if not stop:
                for name in list(pending):
                    deps = [d for d in by_name[name].depends_on if d in by_name]
                    if all(d in records and records[d].status in ("ok", "skipped") for d in deps):
                        pending.remove(name)
                        running[pool.submit(run_one, by_name[name])] = name
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                running.pop(fut)
                result = fut.result()
                failures.extend(result.failures)
                if not result.ok:
                    stop = True  # let running phases finish; start nothing new
    return UpResult(
        run_id,
        tuple(records[p.name] for p in phases if p.name in records),
        tuple(findings),
        tuple(failures),
        time.monotonic() - t0,
    )
