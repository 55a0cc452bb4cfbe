"""`hzcloud up`: a scheduler over the phase registry, journaling every step. Names no executor."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from hzcloud import journal, sitelock
from hzcloud import phases as registry
from hzcloud.errors import HzError, UsageError
from hzcloud.executors import STOP, STOPPED, RunContext, request_stop, run_phase
from hzcloud.model import Site, load_site, site_file
from hzcloud.outcome import DryRun, Event, Failure, PhaseResult, UpResult
from hzcloud.plan import Phase, Plan, plan_site
from hzcloud.siteyaml import unwritable

STATE_DIR = "state"
DONE = ("ok", "skipped")


@dataclass(frozen=True)
class Loaded:
    site: Site
    plan: Plan
    site_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.site_dir / STATE_DIR


def load(path: Path) -> Loaded:
    """The site, validated, and its plan: loaded once per command."""
    site = load_site(path)
    return Loaded(site, plan_site(site), site_file(path).parent.resolve())


def plan_hash(plan: Plan) -> str:
    return hashlib.sha256(plan.to_json().encode()).hexdigest()[:16]


def done_phases(state_dir: Path) -> set[str]:
    """Phases whose latest run completed (read from the journal; touches no host)."""
    return {n for n, r in journal.latest(state_dir).items() if r.status in DONE}


def select_phases(plan: Plan, only: list[str] | None, state_dir: Path) -> list[Phase]:
    """The phases to run, refusing a phase whose prerequisites have not completed."""
    names = [p.name for p in plan.phases]
    if only is None:
        return list(plan.phases)
    unknown = [n for n in only if n not in names]
    if unknown:
        raise UsageError(
            f"unknown phase {', '.join(unknown)}",
            "this site's plan has no such phase (a switched-off service has none)",
            f"choose from: {', '.join(names)}",
        )
    chosen = [p for p in plan.phases if p.name in only]
    done = done_phases(state_dir)
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


def missing_needs(loaded: Loaded, chosen: list[Phase]) -> list[registry.Need]:
    """What the chosen phases need on the control node and is not there."""
    found: dict[tuple[Path, str], registry.Need] = {}
    for p in chosen:
        for need in registry.phase(p.name).needs(loaded.site, loaded.site_dir):
            if not need.met():
                found.setdefault((need.path, need.key), need)
    return list(found.values())


def check_needs(loaded: Loaded, chosen: list[Phase]) -> None:
    """Refuse to start (exit 2, nothing touched) when a phase's inputs are missing."""
    missing = missing_needs(loaded, chosen)
    if missing:
        shown = ", ".join(n.shown for n in missing[:4]) + (" ..." if len(missing) > 4 else "")
        files = [n for n in missing if not n.key]
        causes = [
            *(
                [
                    "; ".join(sorted({n.what.split(":")[0] for n in files}))
                    + " come from the artifacts folder"
                ]
                if files
                else []
            ),
            *(
                ["a tenant's keys in secrets.yaml are the operator's"]
                if len(files) < len(missing)
                else []
            ),
        ]
        raise UsageError(
            f"{len(missing)} {'files' if len(files) == len(missing) else 'things'} the phases "
            f"need are missing: {shown}"
            if len(missing) > 1
            else f"{missing[0].shown} is missing ({missing[0].what})",
            "; ".join(causes) + "; nothing was touched",
            "; ".join(dict.fromkeys(n.fix for n in missing)),  # each distinct fix, in order
        )


def dry_run(loaded: Loaded, only: list[str] | None) -> DryRun:
    """What `up` would run and what it would miss; reads, never writes."""
    chosen = select_phases(loaded.plan, only, loaded.state_dir)
    problem = unwritable(loaded.site_dir)
    return DryRun(
        tuple(chosen),
        tuple(missing_needs(loaded, chosen)),
        tuple(
            (p.name, registry.phase(p.name).unavailable)
            for p in chosen
            if registry.phase(p.name).unavailable
        ),
        None if problem is None else (problem.what, problem.fix),
    )


def endpoints(loaded: Loaded, deployed: set[str]) -> list[registry.Endpoint]:
    """Where clients connect to what has been deployed (the registry's endpoints)."""
    return registry.endpoints(loaded.site, loaded.plan, loaded.site_dir, deployed)


Reporter = Callable[[Event], None]

_STOPPING = (
    "stopping: the running phases end at their next safe point, none starts; the journal keeps "
    "what is done and `hzcloud up` resumes (Ctrl-C again ends them now)",
    "ending the running phases now",
)


def up(
    loaded: Loaded,
    only: list[str] | None,
    on_event: Reporter,
    prepare: Callable[[Loaded], None],
) -> UpResult:
    """Converge the site: phases whose prerequisites are met run at the same time; a failed
    phase stops only the phases that depend on it.

    `prepare` writes what the executors read (render: inventory, group_vars, secrets, CAs);
    it runs after every input has been checked and before any host is touched.
    """
    t0 = time.monotonic()
    STOP.clear()  # a stop asked of an earlier run in this process is not this run's
    chosen = select_phases(loaded.plan, only, loaded.state_dir)
    check_needs(loaded, chosen)
    # one run at a time on a site (taken after the inputs are checked, before anything is written)
    with sitelock.hold(loaded.site_dir):
        prepare(loaded)
        state = loaded.state_dir
        ctx = RunContext(loaded.site, loaded.plan, loaded.site_dir)
        phash = plan_hash(loaded.plan)
        resumed = journal.resume_point(state, phash)
        run_id = journal.new_run_id()
        records: dict[str, journal.PhaseRecord] = {}
        findings: list[dict[str, object]] = []
        failures: list[Failure] = []
        by_name = {p.name: p for p in chosen}
        pending = [p.name for p in chosen]
        changes: dict[str, list[str]] = {}

        def tell(ev: Event) -> None:  # what changed is kept for the journal and the report
            if ev.kind == "changed":
                changes.setdefault(ev.phase, []).append(f"{ev.host}: {ev.task}")
            on_event(ev)

        def finish(name: str, status: str, start: float, error: dict[str, str]) -> None:
            rec = journal.PhaseRecord(
                run_id, name, status, start, time.time(), plan_hash=phash, error=error
            )
            journal.append(state, rec)
            records[name] = rec

        named = set(only or ())  # a phase the operator names runs, even when it was done before
        for name in list(pending):
            if name in resumed and name not in ("preflight", "verify") and name not in named:
                finish(name, "skipped", time.time(), {"note": "done in the interrupted run"})
                pending.remove(name)
                tell(Event(name, "phase-skipped", detail="done before; resuming"))

        def run_one(phase: Phase) -> PhaseResult:
            spec = registry.phase(phase.name)
            start = time.time()
            journal.append(
                state, journal.PhaseRecord(run_id, phase.name, "running", start, plan_hash=phash)
            )
            tell(Event(phase.name, "phase-start"))
            try:
                if spec.unavailable:
                    raise HzError(spec.unavailable)
                result = run_phase(spec, ctx, tell)
            except HzError as exc:
                message = exc.what + (f": {exc.cause}" if exc.cause else "")
                tell(Event(phase.name, "failed", detail=message))
                result = PhaseResult(
                    phase.name, False, 0, time.time() - start, failures=(Failure("", "", message),)
                )
            first = result.failures[0] if result.failures else None
            stopped = not result.ok and any(f.message == STOPPED for f in result.failures)
            rec = journal.PhaseRecord(
                run_id,
                phase.name,
                "ok" if result.ok else "stopped" if stopped else "failed",
                start,
                time.time(),
                result.changed,
                round(result.seconds, 2),
                result.hosts,
                {"host": first.host, "task": first.task, "message": first.message} if first else {},
                phash,
                changes.get(phase.name, []),
            )
            journal.append(state, rec)
            records[phase.name] = rec
            tell(Event(phase.name, "phase-end", detail=rec.status))
            return result

        def blocked_by(name: str) -> list[str]:
            deps = [d for d in by_name[name].depends_on if d in by_name]
            return [d for d in deps if d in records and records[d].status not in DONE]

        running: dict[Future[PhaseResult], str] = {}
        interrupts = 0
        with ThreadPoolExecutor(max_workers=4) as pool:
            while pending or running:
                if STOP.is_set():  # stopped by the operator: nothing new starts
                    for name in pending:
                        finish(name, "stopped", time.time(), {"note": "not run: up was stopped"})
                        tell(Event(name, "phase-blocked", detail="not run: up was stopped"))
                    pending.clear()
                for name in list(pending):
                    blockers = blocked_by(name)
                    if blockers:
                        pending.remove(name)
                        note = f"not run: needs {', '.join(blockers)}, which did not complete"
                        finish(name, "blocked", time.time(), {"note": note})
                        tell(Event(name, "phase-blocked", detail=note))
                        continue
                    deps = [d for d in by_name[name].depends_on if d in by_name]
                    if all(d in records for d in deps):
                        pending.remove(name)
                        running[pool.submit(run_one, by_name[name])] = name
                if not running:
                    if pending:  # only blocked phases left: the loop above records them
                        continue
                    break
                try:
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:  # Ctrl-C, SIGINT, SIGTERM (executors.stop_signals)
                    interrupts += 1
                    request_stop(again=interrupts > 1)
                    tell(Event("", "message", detail=_STOPPING[interrupts > 1]))
                    continue
                for fut in finished:
                    running.pop(fut)
                    result = fut.result()
                    failures.extend(result.failures)
                    findings.extend(result.findings)
        return UpResult(
            run_id,
            tuple(records[p.name] for p in chosen if p.name in records),
            tuple(findings),
            tuple(failures),
            time.monotonic() - t0,
        )
