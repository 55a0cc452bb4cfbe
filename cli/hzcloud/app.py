"""The hzcloud command line: parse, call the engine, report.

The start is kept cheap (`--help`, `validate`, `plan`): the engine, the printer, the site model
and the command groups (lab, fleet, bundle, backup) are imported by the commands that use them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from hzcloud.errors import HzError, Stopped
from hzcloud.output import Output

if TYPE_CHECKING:
    from hzcloud import engine

# name -> (module, attribute, help): imported when the group is run or its help is asked for
_LAZY: dict[str, tuple[str, str, str]] = {
    "lab": ("hzcloud.commands.lab", "app", "The eight-node lab on this Linux host (nspawn)."),
    "fleet": ("hzcloud.commands.fleet", "app", "Many sites from one fleet.yaml, in waves."),
    "bundle": (
        "hzcloud.commands.bundle",
        "app",
        "The clinical service bundle: list, show, validate; install, upgrade, status, verify, remove.",
    ),
    "backup": ("hzcloud.commands.backup", "app", "Backups into the site's cloud tenant."),
    "restore": (
        "hzcloud.commands.backup",
        "restore",
        "Restore drill: every layer from the tenant into scratch space, compared with the site.",
    ),
}


class _Group(TyperGroup):
    """Catches the one domain error at the edge: a clear message and an exit code, no traceback.

    Also the root of the lazily imported command groups: the root's help lists them from
    `_LAZY` without importing them.
    """

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in _LAZY if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in _LAZY:
            return super().get_command(ctx, cmd_name)
        module, attr, short = _LAZY[cmd_name]
        if self._listing:
            return TyperCommand(cmd_name, help=short, short_help=short)
        target = getattr(importlib.import_module(module), attr)
        command: Any
        if isinstance(target, typer.Typer):
            command = typer.main.get_group(target)
        else:
            holder = typer.Typer(
                add_completion=False,
                rich_markup_mode="rich",
                context_settings={"help_option_names": ["-h", "--help"]},
            )
            holder.command(cmd_name)(target)
            command = typer.main.get_command(holder)
        command.name = cmd_name
        if not command.help:
            command.help = short
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HzError as exc:
            if ctx.meta.get("hz_debug"):
                raise
            from hzcloud import report

            report.error(exc)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            from hzcloud.siteyaml import access_error

            refused = access_error(exc)  # a write refused by the file system is bad input
            if refused is None or ctx.meta.get("hz_debug"):
                raise
            from hzcloud import report

            report.error(refused)
            raise typer.Exit(refused.exit_code) from None
        except KeyboardInterrupt:  # outside `up`'s phases (they stop on their own, see engine)
            if ctx.meta.get("hz_debug"):
                raise
            from hzcloud import report

            stopped = Stopped("stopped by the operator", "", "run the command again")
            report.error(stopped)
            raise typer.Exit(stopped.exit_code) from None


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
        from hzcloud import __version__

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


@app.command()
def validate(site: SiteArg = Path(".")) -> None:
    """Check site.yaml and list every problem (exit 2 when there is one)."""
    from hzcloud.model import load_site, site_file

    loaded = load_site(site)
    _console().print(
        f"{site_file(site)}: ok — {loaded.hospital.name}, {len(loaded.servers)} servers"
    )


@app.command()
def plan(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Show where every role goes and the phases, without touching any host."""
    from hzcloud.model import load_site
    from hzcloud.plan import plan_site

    the_plan = plan_site(load_site(site))
    if output is Output.json:
        sys.stdout.write(the_plan.to_json())
    else:
        from hzcloud import report

        report.plan_table(the_plan)


@app.command("render")
def render_cmd(site: SiteArg = Path("."), new_secret: NewSecretOpt = None) -> None:
    """Write the plan as Ansible inventory, group_vars and ansible.cfg into state/."""
    from hzcloud import engine
    from hzcloud.render import render
    from hzcloud.secrets import ensure_secrets

    loaded = engine.load(site)
    ensure_secrets(loaded.site_dir, new_secret or ())
    result = render(loaded.site, loaded.plan, loaded.site_dir)
    _console().print(
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
    from hzcloud import engine, report, wizard
    from hzcloud.initsite import refuse_before_asking, text_from_file, write_site
    from hzcloud.model import load_site, site_file
    from hzcloud.plan import plan_site

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
    site = load_site(written)
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
    from hzcloud import engine, report
    from hzcloud.secrets import check_secrets

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
    from hzcloud.secrets import ensure_secrets

    ensure_secrets(loaded.site_dir, new_secrets)
    render(loaded.site, loaded.plan, loaded.site_dir)


def _up(
    loaded: engine.Loaded, only: str | None, output: Output, new_secrets: tuple[str, ...] = ()
) -> None:
    from hzcloud import engine, report
    from hzcloud.executors import stop_signals

    progress = report.UpProgress(quiet=output is Output.json)
    try:
        with stop_signals():
            result = engine.up(
                loaded, _phases(only), progress, prepare=lambda ld: _render(ld, new_secrets)
            )
    finally:
        progress.close()
    done = engine.done_phases(loaded.state_dir)
    report.up_summary(result, output, engine.endpoints(loaded, done))
    journal_file = loaded.state_dir / "journal.jsonl"
    if result.stopped:
        stopped = [r.phase for r in result.records if r.status == "stopped"]
        raise Stopped(
            "stopped by the operator"
            + (f": {', '.join(stopped)} did not finish" if stopped else ""),
            f"the journal ({journal_file}) keeps what was done",
            f"`hzcloud up {loaded.site_dir}` resumes where it stopped",
        )
    if not result.ok:
        failed = next(r for r in result.records if r.status == "failed")
        err = failed.error
        raise HzError(
            f"{failed.phase} failed"
            + (f" on {err['host']}" if err.get("host") else "")
            + (f' (task "{err["task"]}")' if err.get("task") else ""),
            err.get("message", ""),
            f"fix the cause, then `hzcloud up {loaded.site_dir}` resumes at {failed.phase} "
            f"(journal: {journal_file})",
        )


@app.command()
def status(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """What the last runs did and where to connect, from the journal; touches no host."""
    from hzcloud import engine, journal, report

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
    from hzcloud import engine, report
    from hzcloud.verify import check_junit_target, run_checks, write_junit

    loaded = engine.load(site)
    if junit:
        check_junit_target(junit)  # before the checks run, not after
    _render(loaded)
    deployed = engine.done_phases(loaded.state_dir)
    checks = run_checks(loaded.plan, loaded.state_dir, deployed | {"base"}, site=loaded.site)
    if junit:
        write_junit(checks, junit)
    report.verify_result(checks, output)
    if not all(c.passed for c in checks):
        raise typer.Exit(1)


def _console() -> Any:
    from hzcloud import report

    return report.console()


def main() -> None:
    app()
