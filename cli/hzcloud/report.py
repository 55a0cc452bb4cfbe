"""Everything hzcloud prints: errors, plans, summaries. Engine code never prints."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from hzcloud.errors import HzError, SiteError
from hzcloud.journal import PhaseRecord, status_view
from hzcloud.outcome import DryRun, Event, UpResult
from hzcloud.output import Output
from hzcloud.plan import Plan

if TYPE_CHECKING:
    from hzcloud.outcome import Check
    from hzcloud.phases import Endpoint


def console(stderr: bool = False) -> Console:
    # highlight=False: plain lines in pipes and CI logs stay free of colour codes;
    # emoji=False: a value such as ":hospital:" in a message is printed as written
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def error(exc: HzError) -> None:
    """Print an HzError in the house format to stderr."""
    err = console(stderr=True)
    if isinstance(exc, SiteError):
        err.print(f"[bold red]error:[/] {escape(exc.what)}; nothing was changed")
        for p in exc.problems:
            place = p.file if p.line is None else f"{p.file}:{p.line}"
            key = f" {escape(p.key)}:" if p.key else ""
            err.print(f"  • {escape(place)}{key} {escape(p.what)}")
            err.print(f"      fix: {escape(p.fix)}")
        return
    err.print(f"[bold red]error:[/] {escape(exc.what)}")
    if exc.cause:
        err.print(f"  cause: {escape(exc.cause)}")
    if exc.fix:
        err.print(f"  fix:   {escape(exc.fix)}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def plan_table(plan: Plan) -> None:
    out = console()
    out.print(f"[bold]{escape(plan.hospital)}[/] ({plan.site}) — {len(plan.nodes)} servers")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("server")
    table.add_column("address")
    table.add_column("roles")
    table.add_column("disks")
    for n in plan.nodes:
        table.add_row(n.name, n.address, " ".join(n.roles), " ".join(n.disks) or "-")
    out.print(table)
    out.print("phases:")
    for p in plan.phases:
        after = f" (after {', '.join(p.depends_on)})" if p.depends_on else ""
        out.print(f"  {p.name:<11} {p.executor:<9} {escape(p.description)}{after}")


class UpProgress:
    """Live view of `hzcloud up`: one line per phase on a terminal, plain lines in a pipe."""

    def __init__(self, quiet: bool = False) -> None:
        self.out = console(stderr=quiet)
        self.live_mode = self.out.is_terminal and not quiet
        self.quiet = quiet
        self.lock = threading.Lock()
        self.phases: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        if self.live_mode:
            self.live = Live(self._table(), console=self.out, refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self) -> Table:
        table = Table(show_edge=False, pad_edge=False, box=None)
        for col in ("phase", "status", "changed", "elapsed", "now"):
            table.add_column(col)
        now = time.monotonic()
        for name, st in self.phases.items():
            end = st.get("end") or now
            table.add_row(
                name,
                st["status"],
                str(st["changed"]),
                f"{end - st['start']:.0f}s",
                escape(st["now"])[:70],
            )
        return table

    def __call__(self, ev: Event) -> None:
        with self.lock:
            if ev.kind == "message":  # about the whole run, not one phase (stderr, even in JSON)
                (self.live.console if self.live is not None else console(stderr=True)).print(
                    escape(ev.detail)
                )
                return
            st = self.phases.setdefault(
                ev.phase,
                {
                    "status": "waiting",
                    "changed": 0,
                    "start": time.monotonic(),
                    "end": None,
                    "now": "",
                },
            )
            line = ""
            if ev.kind == "phase-start":
                st.update(status="running", start=time.monotonic())
                line = f"[{ev.phase}] started"
            elif ev.kind == "phase-end":
                st.update(status=ev.detail, end=time.monotonic(), now="")
                line = f"[{ev.phase}] {ev.detail} in {st['end'] - st['start']:.1f}s, {st['changed']} changed"
            elif ev.kind in ("phase-skipped", "phase-blocked"):
                st.update(status=ev.kind.removeprefix("phase-"), end=st["start"])
                line = f"[{ev.phase}] {st['status']}: {ev.detail}"
            elif ev.kind == "task":
                st["now"] = ev.task
                line = f"[{ev.phase}] {ev.task}"
            elif ev.kind == "changed":
                st["changed"] += 1
                line = f"[{ev.phase}] {ev.host}: changed: {ev.task}"
            elif ev.kind in ("failed", "unreachable"):
                line = f"[{ev.phase}] {ev.host}: {ev.kind.upper()}: {ev.task}: {ev.detail}"
            if self.live is not None:
                if ev.kind in ("failed", "unreachable", "phase-end"):
                    self.live.console.print(escape(line))
                self.live.update(self._table())
            elif line and not self.quiet:
                self.out.print(escape(line))

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()


def _endpoint_dicts(found: list[Endpoint]) -> list[dict[str, str]]:
    return [{"name": e.name, "url": e.url, "ca": e.ca} for e in found]


def _endpoint_lines(found: list[Endpoint]) -> None:
    out = console()
    if not found:
        return
    out.print("[bold]endpoints[/]")
    for e in found:
        extra = "  ".join(x for x in (f"CA {e.ca}" if e.ca else "", e.note) if x)
        out.print(f"  {e.name:<15} {escape(e.url)}" + (f"  ({escape(extra)})" if extra else ""))


def dry_run(plan: Plan, dry: DryRun, output: Output) -> None:
    """What `up` would run, what it would miss, what this build cannot run."""
    if output is Output.json:
        print_json(
            {
                "phases": [{"name": p.name, "depends_on": list(p.depends_on)} for p in dry.phases],
                "missing": [
                    {"what": n.what, "path": str(n.path), "fix": n.fix} for n in dry.missing
                ],
                "unavailable": [{"name": n, "why": why} for n, why in dry.unavailable],
                "unwritable": (
                    None
                    if dry.unwritable is None
                    else {"what": dry.unwritable[0], "fix": dry.unwritable[1]}
                ),
            }
        )
        return
    plan_table(plan)
    out = console()
    out.print("would run: " + ", ".join(p.name for p in dry.phases))
    if dry.unwritable is not None:
        out.print(f"[yellow]would stop[/] before any host: {escape(dry.unwritable[0])}")
        out.print(f"  fix: {escape(dry.unwritable[1])}")
    for name, why in dry.unavailable:
        out.print(f"[yellow]would fail[/] {name}: {escape(why)}")
    if dry.missing:
        out.print(
            f"[yellow]missing[/] ({len(dry.missing)} {'thing' if len(dry.missing) == 1 else 'things'};"
            " `up` would stop before any host):"
        )
        for n in dry.missing:
            out.print(f"  {escape(n.what)}: {n.path}")
        for fix in dict.fromkeys(n.fix for n in dry.missing):  # each distinct fix, in order
            out.print(f"  fix: {escape(fix)}")


def up_summary(result: UpResult, output: Output, found: list[Endpoint]) -> None:
    if output is Output.json:
        print_json(
            {
                "ok": result.ok,
                "run": result.run,
                "seconds": round(result.seconds, 1),
                "phases": [
                    {
                        "name": r.phase,
                        "status": r.status,
                        "changed": r.changed,
                        "changes": r.changes,
                        "seconds": r.seconds,
                        "error": r.error or None,
                    }
                    for r in result.records
                ],
                "findings": [f for f in result.findings if not f["ok"]],
                "endpoints": _endpoint_dicts(found),
            }
        )
        return
    out = console()
    problems = [f for f in result.findings if not f["ok"]]
    if problems:
        table = Table(title="preflight findings", show_edge=False, pad_edge=False)
        for col in ("host", "check", "blocking", "detail"):
            table.add_column(col)
        for f in problems:
            table.add_row(
                str(f["host"]),
                str(f["check"]),
                "yes" if f["blocking"] else "no",
                escape(str(f["detail"])),
            )
        out.print(table)
    table = Table(show_edge=False, pad_edge=False)
    for col in ("phase", "status", "changed", "seconds"):
        table.add_column(col)
    for r in result.records:
        table.add_row(r.phase, r.status, str(r.changed), f"{r.seconds:.1f}")
    out.print(table)
    total = sum(r.changed for r in result.records)
    verdict = "ok" if result.ok else "STOPPED" if result.stopped else "FAILED"
    out.print(f"{verdict}: {total} changed in {result.seconds:.1f}s (run {result.run})")
    if result.ok:
        _endpoint_lines(found)


def status(records: list[PhaseRecord], found: list[Endpoint], output: Output) -> None:
    if output is Output.json:
        print_json(
            {
                "phases": [status_view(r) for r in records],
                "endpoints": _endpoint_dicts(found),
            }
        )
        return
    out = console()
    if not records:
        out.print("nothing has run on this site yet: hzcloud up")
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("phase", "status", "changed", "seconds", "when", "error"):
        table.add_column(col)
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.ended or r.started))
        err = " ".join(f"{k}={v}" for k, v in r.error.items()) if r.error else ""
        table.add_row(r.phase, r.status, str(r.changed), f"{r.seconds:.1f}", when, escape(err))
    out.print(table)
    _endpoint_lines(found)


def verify_result(checks: list[Check], output: Output) -> None:
    passed = all(c.passed for c in checks)
    if output is Output.json:
        print_json({"passed": passed, "checks": [c.to_dict() for c in checks]})
        return
    out = console()
    for c in checks:
        mark = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        out.print(f"{mark} {escape(c.line())}")
    n = sum(not c.passed for c in checks)
    out.print(f"{len(checks)} checks, {n} failed" if n else f"{len(checks)} checks passed")
