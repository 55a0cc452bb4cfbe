"""`hzcloud lab`: the site's servers as systemd-nspawn machines on this host."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hzcloud import lab
from hzcloud.output import Output
from hzcloud.report import console, print_json

app = typer.Typer(
    help="The eight-node lab on this host (systemd-nspawn): up, down, status, ssh;"
    " kill, cut, heal for failure drills.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
)

SiteOpt = Annotated[Path, typer.Option("--site", help="The lab's site folder.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
]


def _printer(output: Output) -> lab.OnEvent:
    out = console(stderr=output is Output.json)

    def show(event: lab.LabEvent) -> None:
        took = f" [dim]{event.seconds:.1f} s[/]" if event.seconds is not None else ""
        mark = (
            "[yellow]![/]"
            if event.level == "warning"
            else ("[green]+[/]" if event.changed else " ")
        )
        out.print(f"{mark} {event.subject:<8} {escape(event.message)}{took}")

    return show


def _preview(events: tuple[lab.LabEvent, ...], output: Output) -> None:
    if output is Output.json:
        print_json({"changes": [f"{e.subject}: {e.message}" for e in events if e.changed]})
        return
    show = _printer(output)
    for event in events:
        show(event)
    if not any(e.changed for e in events):
        console().print("  lab      nothing would change")


def _result_json(result: lab.LabResult) -> None:
    print_json(
        {
            "changed": result.changed,
            "seconds": round(result.seconds, 2),
            "nodes": [dataclasses.asdict(n) for n in result.nodes],
        }
    )


@app.command()
def up(
    site: SiteOpt = Path("lab"), output: OutputOpt = Output.text, dry_run: DryRunOpt = False
) -> None:
    """Boot the lab's servers (idempotent) and write a ready site folder."""
    if dry_run:
        _preview(lab.preview_up(site), output)
        return
    result = lab.up(site, _printer(output))
    if output is Output.json:
        _result_json(result)


@app.command()
def down(
    site: SiteOpt = Path("lab"), output: OutputOpt = Output.text, dry_run: DryRunOpt = False
) -> None:
    """Remove every machine, bridge, mount, loop device and process of the lab."""
    if dry_run:
        _preview(lab.preview_down(site), output)
        return
    result = lab.down(site, _printer(output))
    if output is Output.json:
        _result_json(result)


@app.command()
def status(site: SiteOpt = Path("lab"), output: OutputOpt = Output.text) -> None:
    """Each node's address and state (running/stopped)."""
    result = lab.status(site)
    if output is Output.json:
        print_json({"nodes": [dataclasses.asdict(n) for n in result.nodes]})
        return
    out = console()
    for n in result.nodes:
        colour = {"running": "green", "cut": "yellow"}.get(n.state, "red")
        out.print(f"{n.name:<10} {n.address:<15} [{colour}]{n.state}[/]")


NodeArg = Annotated[str, typer.Argument(help="Node name, e.g. lab-05.")]


@app.command()
def kill(node: NodeArg, site: SiteOpt = Path("lab"), output: OutputOpt = Output.text) -> None:
    """Cut a node's power: it vanishes without a word to its peers; `lab up` boots it again."""
    result = lab.kill(site, node, _printer(output))
    if output is Output.json:
        _result_json(result)


@app.command()
def cut(node: NodeArg, site: SiteOpt = Path("lab"), output: OutputOpt = Output.text) -> None:
    """Cut a node off the network (a partition): it keeps running; `lab heal` undoes it."""
    result = lab.cut(site, node, _printer(output))
    if output is Output.json:
        _result_json(result)


@app.command()
def heal(
    node: Annotated[str | None, typer.Argument(help="Node name; every node when left out.")] = None,
    site: SiteOpt = Path("lab"),
    output: OutputOpt = Output.text,
) -> None:
    """Put nodes cut off by `lab cut` back on the network."""
    result = lab.heal(site, node, _printer(output))
    if output is Output.json:
        _result_json(result)


@app.command()
def ssh(
    node: Annotated[str, typer.Argument(help="Node name, e.g. lab-01.")],
    command: Annotated[list[str] | None, typer.Argument(help="Command to run (after --).")] = None,
    site: SiteOpt = Path("lab"),
) -> None:
    """Log in to a node, or run a command there and return its exit code."""
    argv = lab.ssh_argv(site, node)
    if not command:
        argv.insert(1, "-t")
    # ssh joins its arguments with spaces: quote them so `-- sh -c "a b"` stays three words
    remote = [shlex.join(command)] if command else []
    raise typer.Exit(subprocess.run([*argv, *remote], check=False).returncode)
