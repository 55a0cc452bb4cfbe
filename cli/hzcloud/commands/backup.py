"""`hzcloud backup` and `hzcloud restore`: backups into the cloud tenant, restore drills from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from hzcloud import engine, report
from hzcloud.output import Output

SiteArg = Annotated[Path, typer.Argument(help="Site folder (or its site.yaml).", show_default=".")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]


class _DefaultRun(TyperGroup):
    """`hzcloud backup SITE` runs `backup run SITE`; `hzcloud backup status SITE` the status."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return list(super().parse_args(ctx, args))


app = typer.Typer(
    cls=_DefaultRun,
    help="Backups into the site's cloud tenant (through the link): PostgreSQL, etcd, buckets.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
)


@app.command("run")
def run_cmd(
    site: SiteArg = Path("."),
    now: Annotated[bool, typer.Option("--now", help="Take a backup now.")] = False,
    kind: Annotated[str, typer.Option("--type", help="full, diff or incr.")] = "full",
    output: OutputOpt = Output.text,
) -> None:
    """Every layer into the tenant now (--now); without --now, show where the layers stand."""
    from hzcloud import backup

    loaded = engine.load(site)
    if now:
        done = backup.backup_now(loaded.site, loaded.plan, loaded.state_dir, kind)
        result = {
            "ok": done.ok,
            "node": done.node,
            "type": done.kind,
            "seconds": done.seconds,
            "layers": [x.to_dict() for x in done.layers],
        }
        if output == Output.json:
            report.print_json(result)
        else:
            out = report.console()
            for x in done.layers:
                mark = "[green]ok[/]" if x.ok else "[red]FAILED[/]"
                what = f"{done.kind} backup" if x.name == "postgres" else "copy"
                out.print(f"{mark} {x.name}: {what} on {x.node or '-'} in {x.seconds} s {x.error}")
        if not done.ok:
            raise typer.Exit(1)
        return
    _show(backup.status(loaded.site, loaded.plan, loaded.state_dir), output)


@app.command("status")
def status_cmd(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Each layer's newest good copy in the tenant, and its age."""
    from hzcloud import backup

    loaded = engine.load(site)
    _show(backup.status(loaded.site, loaded.plan, loaded.state_dir), output)


def _show(layers: Any, output: Output) -> None:
    if output == Output.json:
        report.print_json({"layers": [layer.to_dict() for layer in layers]})
        return
    out = report.console()
    for layer in layers:
        age = f"{layer.age_seconds:.0f} s ago" if layer.age_seconds is not None else "never"
        out.print(f"{layer.name:<20} {layer.last_good or '-':<21} {age:<12} {layer.target}")
        if layer.error:
            out.print(f"  [red]{layer.error}[/]")


def restore(
    site: SiteArg = Path("."),
    drill: Annotated[
        bool, typer.Option("--drill", help="Restore into scratch space and compare.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="PostgreSQL to this point in time (ISO 8601, e.g. 2026-12-01T07:30:00Z).",
        ),
    ] = None,
    output: OutputOpt = Output.text,
) -> None:
    """Restore drill: every layer from the tenant into scratch space, compared with the site."""
    from hzcloud import backup
    from hzcloud.errors import UsageError

    if to is not None:
        to = _timestamp(to)
    if not drill:
        raise UsageError(
            "only restore drills are in this build",
            "a restore over the live site is not offered yet",
            "hzcloud restore SITE --drill",
        )
    loaded = engine.load(site)
    layers = backup.restore_drill(loaded.site, loaded.plan, loaded.state_dir, to)
    passed = all(layer.passed for layer in layers)
    if output == Output.json:
        report.print_json({"passed": passed, "layers": [x.to_dict() for x in layers]})
    else:
        out = report.console()
        for x in layers:
            mark = "[green]passed[/]" if x.passed else "[red]FAILED[/]"
            out.print(f"{mark} {x.name}: {x.seconds} s, RPO {x.rpo_seconds} s ({x.detail})")
    if not passed:
        raise typer.Exit(1)


def _timestamp(text: str) -> str:
    """An ISO 8601 time, UTC when it names no zone; as the node tool takes it (no spaces)."""
    from datetime import UTC, datetime

    from hzcloud.errors import UsageError

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"--to {text!r} is not a time",
            str(exc),
            "write ISO 8601, e.g. 2026-12-01T07:30:00Z",
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when > datetime.now(UTC):
        raise UsageError(f"--to {text}: that is in the future", "", "give a past time")
    return when.astimezone(UTC).isoformat()
