"""`hzcloud fleet`: many sites from one fleet.yaml, rolled out in waves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hzcloud import fleet
from hzcloud.errors import HzError
from hzcloud.output import Output
from hzcloud.report import console, print_json

app = typer.Typer(
    help="Many sites from one fleet.yaml: plan, up (in waves), status.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
)

FleetArg = Annotated[Path, typer.Argument(help="fleet.yaml, or the folder holding it.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]
OnlyOpt = Annotated[
    str | None,
    typer.Option(help="Comma-separated phases every site runs (instead of the policy's)."),
]


def _only(only: str | None) -> list[str] | None:
    return [p.strip() for p in only.split(",") if p.strip()] if only else None


@app.command()
def plan(fleet_file: FleetArg, output: OutputOpt = Output.text) -> None:
    """Validate the fleet and every site; show the waves (touches nothing)."""
    the_fleet = fleet.load_fleet(fleet_file)
    if output is Output.json:
        print_json(the_fleet.to_dict())
        return
    out = console()
    out.print(
        f"[bold]{escape(the_fleet.name)}[/] — {len(the_fleet.sites)} sites, "
        f"{len(the_fleet.waves)} waves, {the_fleet.parallel} at a time, "
        f"stops after {the_fleet.max_failures + 1} failed site(s)"
    )
    for wave in the_fleet.waves:
        phases = ",".join(wave.phases) if wave.phases is not None else "every phase"
        out.print(f"  wave {wave.number}: {', '.join(wave.sites)}  ({phases})")


@app.command()
def render(fleet_file: FleetArg) -> None:
    """Write the site.yaml of the sites made from a template (before `hzcloud lab up`)."""
    written = fleet.write_generated(fleet.load_fleet(fleet_file))
    out = console()
    for path in written:
        out.print(f"wrote {path}")
    if not written:
        out.print("every generated site.yaml is up to date")


@app.command()
def up(
    fleet_file: FleetArg,
    only: OnlyOpt = None,
    junit_dir: Annotated[
        Path | None, typer.Option(help="Write one JUnit file per site here.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say which sites would run; touch nothing.")
    ] = False,
    output: OutputOpt = Output.text,
) -> None:
    """Roll out: each wave's sites at once (bounded), each a `hzcloud up` with its own journal."""
    the_fleet = fleet.load_fleet(fleet_file)
    wanted = _only(only)
    if dry_run:
        _preview(the_fleet, wanted, output)
        return
    from hzcloud.executors import stop_signals

    with stop_signals():
        result = fleet.up(the_fleet, wanted, _printer(output))
    if junit_dir is not None:
        fleet.write_junit(the_fleet, junit_dir, wanted)
    _summary(result, output)
    if not result.ok:
        failed = result.failed
        named = "; ".join(
            f"{s.site} at {s.failed_phase or 'start'}" + (f" ({s.error})" if s.error else "")
            for s in failed
        )
        held = [s.site for s in result.sites if s.status == "held"]
        raise HzError(
            f"{len(failed)} site(s) failed: {named}",
            f"the rollout stopped; not started: {', '.join(held)}" if held else "",
            f"fix the cause, then `hzcloud fleet up {fleet_file}` resumes: sites done are "
            f"not run again (logs: {the_fleet.file.parent / fleet.STATE_DIR / 'logs'})",
        )


@app.command()
def status(fleet_file: FleetArg, output: OutputOpt = Output.text) -> None:
    """Each site's state and phases, from its journal; touches no host."""
    sites = fleet.status(fleet.load_fleet(fleet_file))
    if output is Output.json:
        print_json({"sites": sites})
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("site", "wave", "status", "phases"):
        table.add_column(col)
    for s in sites:
        phases = " ".join(f"{p['name']}:{p['status']}" for p in s["phases"]) or "-"
        table.add_row(s["site"], str(s["wave"]), _coloured(s["status"]), phases)
    console().print(table)


def _coloured(state: str) -> str:
    colour = {"ok": "green", "done": "green", "failed": "red", "held": "yellow"}.get(state)
    return f"[{colour}]{state}[/]" if colour else state


def _printer(output: Output) -> fleet.OnFleetEvent:
    out = console(stderr=output is Output.json)

    def show(event: fleet.FleetEvent) -> None:
        mark = "[yellow]![/]" if event.level == "warning" else " "
        out.print(f"{mark} {escape(event.site):<10} {escape(event.message)}")

    return show


def _preview(the_fleet: fleet.Fleet, wanted: list[str] | None, output: Output) -> None:
    rows = fleet.preview(the_fleet, wanted)
    if output is Output.json:
        print_json(
            {
                "sites": [
                    {"site": s.folder, "wave": s.wave, "phases": list(p), "done": done}
                    for s, p, done in rows
                ]
            }
        )
        return
    out = console()
    for s, phases, done in rows:
        what = "done before: would not run" if done else f"would run {','.join(phases)}"
        out.print(f"  wave {s.wave} {s.folder:<10} {what}")


def _summary(result: fleet.FleetResult, output: Output) -> None:
    if output is Output.json:
        print_json(
            {
                "ok": result.ok,
                "seconds": round(result.seconds, 1),
                "stopped": result.stopped,
                "sites": [
                    {
                        "site": s.site,
                        "wave": s.wave,
                        "status": s.status,
                        "seconds": round(s.seconds, 1),
                        "failed_phase": s.failed_phase or None,
                        "error": s.error or None,
                        "log": s.log or None,
                    }
                    for s in result.sites
                ],
            }
        )
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("site", "wave", "status", "seconds", "failed phase", "error"):
        table.add_column(col)
    for s in result.sites:
        table.add_row(
            s.site,
            str(s.wave),
            _coloured(s.status),
            f"{s.seconds:.0f}",
            s.failed_phase or "-",
            escape(s.error)[:80] or "-",
        )
    out = console()
    out.print(table)
    n_ok = sum(s.status in ("ok", "done") for s in result.sites)
    out.print(f"{n_ok} of {len(result.sites)} sites ok in {result.seconds:.0f} s")
