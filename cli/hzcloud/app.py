"""The hzcloud command line: parse, call the engine, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from hzcloud import __version__, engine, report, wizard
from hzcloud.errors import HzError
from hzcloud.initsite import (
    refuse_before_asking,
    text_from_file,
    write_site,
)
from hzcloud.model import Site, load_site, site_file
from hzcloud.plan import plan_site
from hzcloud.report import Output
from hzcloud.secrets import check_secrets, ensure_secrets
from hzcloud.siteyaml import access_error


class _Group(TyperGroup):
    """Catches the one domain error at the edge: a clear message and an exit code, no traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HzError as exc:
            if ctx.meta.get("hz_debug"):
                raise
            report.error(exc)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            refused = access_error(exc)  # a write refused by the file system is bad input
            if refused is None or ctx.meta.get("hz_debug"):
                raise
            report.error(refused)
            raise typer.Exit(refused.exit_code) from None


app = typer.Typer(
    cls=_Group,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Turn a hospital's rack of servers into a private cloud.",
)

SiteArg = Annotated[Path, typer.Argument(help="Site folder (or its site.yaml).", show_default=".")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]
NewSecretOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--new-secret",
        metavar="KEY",
        help="Make this secret, missing from an existing secrets.yaml, on purpose.",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hzcloud {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    ctx.meta["hz_debug"] = debug


def site_dir_of(path: Path) -> Path:
    return Path(site_file(path).parent)


@app.command()
def validate(site: SiteArg = Path(".")) -> None:
    """Check site.yaml and list every problem (exit 2 when there is one)."""
    loaded = load_site(site)
    report.console().print(
        f"{site_file(site)}: ok — {loaded.hospital.name}, {len(loaded.servers)} servers"
    )


@app.command()
def plan(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Show where every role goes and the phases, without touching any host."""
    the_plan = plan_site(load_site(site))
    if output is Output.json:
        sys.stdout.write(the_plan.to_json())
    else:
        report.plan_table(the_plan)


@app.command("render")
def render_cmd(site: SiteArg = Path("."), new_secret: NewSecretOpt = None) -> None:
    """Write the plan as Ansible inventory, group_vars and ansible.cfg into state/."""
    from hzcloud.render import render

    loaded = engine.load(site)
    ensure_secrets(loaded.site_dir, new_secret or ())
    result = render(loaded.site, loaded.plan, loaded.site_dir)
    report.console().print(
        f"rendered {result.state_dir}: {len(result.written)} written, "
        f"{len(result.unchanged)} unchanged"
    )


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Site folder to create.")] = Path("."),
    from_file: Annotated[
        Path | None, typer.Option("--from", help="Take an existing site.yaml as it is.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Hospital name.")] = None,
    code: Annotated[
        str | None, typer.Option(help="Short site code (default from the name).")
    ] = None,
    server: Annotated[
        list[str] | None,
        typer.Option("--server", help="NAME=ADDRESS[:DISK,...], once per server."),
    ] = None,
    ssh_user: Annotated[str, typer.Option(help="SSH user on the servers.")] = "root",
    ssh_key: Annotated[str, typer.Option(help="SSH private key.")] = "~/.ssh/id_ed25519",
    management: Annotated[str | None, typer.Option(help="Management network CIDR.")] = None,
    postgres_vip: Annotated[
        str | None, typer.Option(help="Free address for PostgreSQL clients.")
    ] = None,
    kubernetes_vip: Annotated[
        str | None, typer.Option(help="Free address for the Kubernetes API.")
    ] = None,
    mirror: Annotated[str, typer.Option(help="apt mirror or proxy URL for air-gapped sites.")] = "",
    non_interactive: Annotated[
        bool, typer.Option("--non-interactive", "-y", help="Never ask; fail on what is missing.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing site.yaml.")] = False,
    run_up: Annotated[
        bool | None,
        typer.Option("--up/--no-up", help="Run `hzcloud up` right after (asked when interactive)."),
    ] = None,
    only: Annotated[str | None, typer.Option(help="With --up: the phases to run.")] = None,
) -> None:
    """Create a site folder: asks only what it cannot guess, shows the plan, writes site.yaml."""
    out = report.console()
    if from_file is not None:
        text = text_from_file(site_file(from_file))
    else:
        if not non_interactive:
            refuse_before_asking(directory, force)  # not after the operator typed every answer
        text = wizard.site_text_from(
            wizard.Given(
                name,
                code,
                tuple(server or ()),
                ssh_user,
                ssh_key,
                management,
                postgres_vip,
                kubernetes_vip,
                mirror,
            ),
            interactive=not non_interactive,
        )
    written = write_site(directory, text, force=force)
    site: Site = load_site(written)
    report.plan_table(plan_site(site))
    out.print(f"wrote {written}")
    if run_up is None:
        run_up = not non_interactive and from_file is None and typer.confirm("Run hzcloud up now?")
    if run_up:
        _up(engine.load(directory), only, Output.text)
    else:
        out.print(f"next: hzcloud up {directory}")


@app.command()
def up(
    site: SiteArg = Path("."),
    only: Annotated[
        str | None, typer.Option(help="Comma-separated phases to run, e.g. preflight,base,data.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would run and what is missing; write nothing."),
    ] = False,
    output: OutputOpt = Output.text,
    new_secret: NewSecretOpt = None,
) -> None:
    """Converge the site: preflight, then every phase of the plan; resumes after a failure."""
    loaded = engine.load(site)
    if dry_run:
        check_secrets(loaded.site_dir, new_secret or ())  # reads only: a dry run writes nothing
        report.dry_run(loaded.plan, engine.dry_run(loaded, _phases(only)), output)
        return
    _up(loaded, only, output, tuple(new_secret or ()))


def _phases(only: str | None) -> list[str] | None:
    return [p.strip() for p in only.split(",") if p.strip()] if only else None


def _render(loaded: engine.Loaded, new_secrets: tuple[str, ...] = ()) -> None:
    from hzcloud.render import render

    ensure_secrets(loaded.site_dir, new_secrets)
    render(loaded.site, loaded.plan, loaded.site_dir)


def _up(
    loaded: engine.Loaded, only: str | None, output: Output, new_secrets: tuple[str, ...] = ()
) -> None:
    progress = report.UpProgress(quiet=output is Output.json)
    try:
        result = engine.up(
            loaded, _phases(only), progress, prepare=lambda ld: _render(ld, new_secrets)
        )
    finally:
        progress.close()
    done = engine.done_phases(loaded.state_dir)
    report.up_summary(result, output, engine.endpoints(loaded, done))
    if not result.ok:
        failed = next(r for r in result.records if r.status == "failed")
        err = failed.error
        raise HzError(
            f"{failed.phase} failed"
            + (f" on {err['host']}" if err.get("host") else "")
            + (f' (task "{err["task"]}")' if err.get("task") else ""),
            err.get("message", ""),
            f"fix the cause, then `hzcloud up {loaded.site_dir}` resumes at {failed.phase} "
            f"(journal: {loaded.state_dir / 'journal.jsonl'})",
        )


@app.command()
def status(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """What the last runs did and where to connect, from the journal; touches no host."""
    from hzcloud import journal

    loaded = engine.load(site)
    records = sorted(journal.latest(loaded.state_dir).values(), key=lambda r: r.started)
    report.status(records, engine.endpoints(loaded, engine.done_phases(loaded.state_dir)), output)


@app.command()
def verify(
    site: SiteArg = Path("."),
    junit: Annotated[Path | None, typer.Option(help="Also write a JUnit XML report here.")] = None,
    output: OutputOpt = Output.text,
) -> None:
    """Check the deployed site over SSH (testinfra): services, ports, quorums, clocks."""
    from hzcloud.verify import check_junit_target, run_checks, write_junit

    loaded = engine.load(site)
    if junit:
        check_junit_target(junit)  # before the checks run, not after
    _render(loaded)
    deployed = engine.done_phases(loaded.state_dir)
    checks = run_checks(loaded.plan, loaded.state_dir, deployed | {"base"})
    if junit:
        write_junit(checks, junit)
    report.verify_result(checks, output)
    if not all(c.passed for c in checks):
        raise typer.Exit(1)


def main() -> None:
    app()


def _mount_subcommands() -> None:
    from hzcloud.commands.backup import app as backup_app
    from hzcloud.commands.backup import restore
    from hzcloud.commands.bundle import app as bundle_app
    from hzcloud.commands.fleet import app as fleet_app
    from hzcloud.commands.lab import app as lab_app

    app.add_typer(lab_app, name="lab", help="The eight-node lab on this Linux host (nspawn).")
    app.add_typer(fleet_app, name="fleet", help="Many sites from one fleet.yaml, in waves.")
    app.add_typer(
        bundle_app, name="bundle", help="The clinical service bundle: list, show, validate."
    )
    app.add_typer(backup_app, name="backup", help="Backups into the site's cloud tenant.")
    app.command("restore")(restore)


_mount_subcommands()
