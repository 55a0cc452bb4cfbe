"""`hzcloud bundle`: the clinical service bundle's entries, read and checked without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hzcloud.output import Output

if TYPE_CHECKING:
    from hzcloud.bundle import Bundle

app = typer.Typer(
    help="The clinical service bundle: list, show, validate; install, upgrade, status, verify, remove.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
)

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]
BundleOpt = Annotated[
    Path | None,
    typer.Option("--bundle", help="A bundle folder (default: the one shipped with hzcloud)."),
]


def _bundle(folder: Path | None) -> Bundle:
    from hzcloud import bundle

    return bundle.load_bundle(folder if folder is not None else bundle.default_bundle_dir())


@app.command("list")
def list_cmd(
    site: Annotated[
        Path | None,
        typer.Argument(
            help="A site folder: use its bundle and mark what it picks.", show_default=False
        ),
    ] = None,
    bundle_dir: BundleOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """The bundle's entries, their versions and the service names each serves."""
    from hzcloud import bundle
    from hzcloud.model import load_site, site_file

    picked: list[str] = []
    if site is not None:
        the_site = load_site(site)  # also checks bundle.services against the site's bundle
        picked = list(the_site.bundle.services)
        the_bundle = (
            _bundle(bundle_dir)
            if bundle_dir is not None
            else bundle.bundle_for_site(the_site, site_file(site).parent)
        )
    else:
        the_bundle = _bundle(bundle_dir)
    entries = [
        bundle.entry_summary(the_bundle, le, set(picked)) for le in the_bundle.entries.values()
    ]
    data: dict[str, Any] = {
        "bundle": {
            "name": the_bundle.name,
            "version": the_bundle.version,
            "path": str(the_bundle.path),
        },
        "site": str(site_file(site).parent) if site is not None else None,
        "picked": picked,
        "entries": entries,
    }
    if output is Output.json:
        from hzcloud.report import print_json

        print_json(data)
        return
    from rich.markup import escape
    from rich.table import Table

    from hzcloud.report import console

    out = console()
    out.print(
        f"[bold]bundle {escape(the_bundle.name)} {escape(the_bundle.version)}[/] ({the_bundle.path})"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("entry", "version", "serves", "picked", "images"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e["name"],
            e["version"],
            ", ".join(e["offers"]),
            ", ".join(e["picked"]) if site is not None else "",
            ", ".join(e["images"]),
        )
    out.print(table)


@app.command()
def show(
    name: Annotated[
        str, typer.Argument(help="An entry (fhir) or a service name it serves (codes).")
    ],
    bundle_dir: BundleOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """One entry: images, needs, the endpoints it will expose, its probes and checks."""
    from hzcloud import bundle
    from hzcloud.errors import UsageError

    the_bundle = _bundle(bundle_dir)
    le = the_bundle.entry_for(name)
    if le is None:
        raise UsageError(
            f"bundle {the_bundle.name} has no entry or service '{name}'",
            f"entries: {', '.join(the_bundle.entries)}; services: {the_bundle.known()}",
            "`hzcloud bundle list` shows them",
        )
    data = bundle.entry_detail(le)
    if output is Output.json:
        from hzcloud.report import print_json

        print_json(data)
        return
    _show_text(data)


def _show_text(data: dict[str, Any]) -> None:
    from rich.markup import escape

    from hzcloud.report import console

    out = console()
    out.print(
        f"[bold]{escape(data['name'])} {escape(data['version'])}[/] — {escape(data['description'])}"
    )
    out.print(f"  serves: {', '.join(data['offers'])}")
    for img in data["images"]:
        out.print(f"  image: {img['ref']}  ({img['archive']})")
    needs = data["needs"]
    for kind in ("postgres", "redis", "s3"):
        if kind in needs:
            spec = ", ".join(f"{k} {v}" for k, v in needs[kind].items())
            out.print(f"  needs {kind}: {escape(spec)}")
    if needs.get("secrets"):
        out.print(f"  needs secrets: {', '.join(needs['secrets'])}")
    for ep in data["endpoints"]:
        where = f"{ep['host']}.<site domain>"
        url = (
            f"https://{where}{ep['path']}"
            if ep["scheme"] == "https"
            else f"tcp://{where}:{ep['port']}"
        )
        out.print(f"  endpoint {ep['name']}: {escape(url)}")
    for env_name, spec in data["env"].items():
        secret = escape("  [secret]") if spec["secret"] else ""
        out.print(f"  env {env_name}={escape(spec['value'])}{secret}")
    for path in data["config"]:
        out.print(f"  config file: {path}")
    res = data["resources"]
    out.print(
        f"  replicas {data['replicas']}; requests {res['requests']['cpu']} CPU "
        f"{res['requests']['memory']}, limits {res['limits']['cpu']} CPU {res['limits']['memory']}"
    )
    for kind, probe in data["probes"].items():
        how = (
            f"http {probe['http']['path']} :{probe['http']['port']}"
            if "http" in probe
            else f"tcp :{probe['tcp']['port']}"
        )
        out.print(
            f"  {kind} probe: {how} every {probe['period']} s, "
            f"{probe['failures']} failures ({probe['period'] * probe['failures']} s)"
        )
    if data["depends_on"]:
        out.print(f"  depends on: {', '.join(data['depends_on'])}")
    for check in data["checks"]:
        how = (
            f"GET {check['http']['path']} → {check['http']['status']}"
            if "http" in check
            else f"TCP {check['tcp']['port']} open"
        )
        out.print(f"  check {check['name']}: {escape(how)}")


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A bundle folder (or its bundle.yaml).")],
) -> None:
    """Check a bundle folder and list every problem (exit 2 when there is one)."""
    from hzcloud.report import console

    the_bundle = _bundle(path)
    console().print(
        f"{the_bundle.path}: ok — bundle {the_bundle.name} {the_bundle.version}, "
        f"{len(the_bundle.entries)} entries serving {len(the_bundle.offers)} services"
    )


SiteArg = Annotated[Path, typer.Argument(help="Site folder (or its site.yaml).", show_default=".")]


@app.command()
def install(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Install (or update) the services the site picks: `hzcloud up --only bundle`."""
    from hzcloud import engine
    from hzcloud.app import _up

    _up(engine.load(site), "bundle", output)


@app.command()
def status(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Each picked service: the version it runs, its state, its endpoints (asks the cluster)."""
    from hzcloud import engine
    from hzcloud.phases import bundle as phase

    loaded = engine.load(site)
    data = phase.status(loaded.site, loaded.plan, loaded.site_dir)
    if output is Output.json:
        from hzcloud.report import print_json

        print_json(data)
    else:
        from rich.markup import escape

        from hzcloud.report import console

        out = console()
        for svc in data["services"]:
            out.print(f"[bold]{escape(svc['name'])}[/] {escape(svc['version'])}: {svc['state']}")
            for ep in svc["endpoints"]:
                out.print(f"  {escape(ep['name'])}: {escape(ep['url'])}  (CA {escape(ep['ca'])})")
    if not data["ok"]:  # what was printed says "unknown" where the cluster did not answer
        from hzcloud.errors import HzError

        raise HzError(
            "the cluster did not answer for every service",
            data["error"],
            f"check the Kubernetes API (`hzcloud verify {loaded.site_dir}`), then ask again",
        )


@app.command()
def verify(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Run each picked service's checks against its ports on every Kubernetes node."""
    from hzcloud import engine, report
    from hzcloud.phases import bundle as phase

    loaded = engine.load(site)
    checks = phase.verify(loaded.site, loaded.plan, loaded.site_dir)
    report.verify_result(checks, output)
    if not all(c.passed for c in checks):
        raise typer.Exit(1)


NamesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Services (entries) to act on; default: every one the site picks.", show_default=False
    ),
]


def _only(loaded: Any, names: list[str] | None) -> set[str] | None:
    """The picked entries named (an entry or a service name it serves); exit 2 on others."""
    from hzcloud.errors import UsageError
    from hzcloud.phases import bundle as phase

    if not names:
        return None
    entries = {le.entry.name: le for le in phase.picked(loaded.site, loaded.site_dir)}
    out: set[str] = set()
    for name in names:
        hit = next((n for n, le in entries.items() if name == n or name in le.offers), None)
        if hit is None:
            raise UsageError(
                f"the site does not pick '{name}'",
                f"its picked entries: {', '.join(entries) or 'none'}",
                "name one of them, or add it to bundle.services in site.yaml",
            )
        out.add(hit)
    return out


@app.command()
def upgrade(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Roll each service whose bundle holds another version to it, one pod at a time (the old
    ones serve until the new ones are ready); a version that never becomes ready is rolled back
    to the one that was. The site's bundle says the versions: bundle.folder in site.yaml, or the
    bundle shipped with this hzcloud."""
    from hzcloud import engine, report
    from hzcloud.app import _render
    from hzcloud.errors import HzError
    from hzcloud.phases import bundle as phase

    loaded = engine.load(site)
    running = {
        s["name"]: s for s in phase.status(loaded.site, loaded.plan, loaded.site_dir)["services"]
    }
    moves = [
        {
            "name": le.entry.name,
            "from": running[le.entry.name]["version"]
            if running[le.entry.name]["state"] != "not installed"
            else None,
            "to": le.entry.version,
        }
        for le in phase.picked(loaded.site, loaded.site_dir)
    ]
    todo = {m["name"] for m in moves if m["from"] != m["to"]}
    if output is Output.text:
        out = report.console()
        for m in moves:
            how = f"{m['from'] or 'not installed'} -> {m['to']}" if m["name"] in todo else "current"
            out.print(f"{m['name']}: {how}")
    result = None
    if todo:
        progress = report.UpProgress(quiet=output is Output.json)
        try:
            # the whole phase: a service whose version stays has nothing to change
            result = engine.up(loaded, ["bundle"], progress, prepare=_render)
        finally:
            progress.close()
    after = {
        s["name"]: s for s in phase.status(loaded.site, loaded.plan, loaded.site_dir)["services"]
    }
    for m in moves:
        now = after[m["name"]]
        m["running"], m["state"] = now["version"], now["state"]
        m["result"] = (
            "current"
            if m["name"] not in todo
            else "upgraded"
            if now["version"] == m["to"] and now["state"] == "ready"
            else "rolled back"
            if m["from"] is not None and now["version"] == m["from"]
            else "failed"
        )
    failed = result is not None and not result.ok
    error = None
    if failed:
        assert result is not None
        rec = next(r for r in result.records if r.status == "failed")
        error = rec.error
    if output is Output.json:
        from hzcloud.report import print_json

        print_json({"ok": not failed, "services": moves, "error": error})
    else:
        out = report.console()
        for m in moves:
            if m["name"] in todo:
                out.print(f"{m['name']}: {m['result']}, runs {m['running']} ({m['state']})")
        if not todo:
            out.print("every service already runs its bundle's version")
    if failed:
        assert error is not None
        raise HzError(
            "bundle upgrade failed",
            error.get("message", ""),
            "fix the entry (its probes, image or config), then run `hzcloud bundle upgrade` again",
        )


@app.command()
def remove(
    site: SiteArg = Path("."),
    names: NamesArg = None,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="Also delete each service's database and role, bucket with its objects, S3 "
            "user and credentials: its data is gone for good.",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete with --purge without asking.")
    ] = False,
    output: OutputOpt = Output.text,
) -> None:
    """Remove the services' workloads; their databases, buckets and credentials stay unless
    --purge is given (which lists what it deletes and asks first)."""
    import sys

    from hzcloud import engine, report
    from hzcloud.errors import HzError, UsageError
    from hzcloud.phases import bundle as phase

    loaded = engine.load(site)
    only = _only(loaded, names)
    gone = [
        g
        for g in phase.purge_list(loaded.site, loaded.plan, loaded.site_dir)
        if only is None or g["name"] in only
    ]
    if purge:
        listed = "; ".join(f"{g['name']}: {', '.join(g['deletes']) or 'no data'}" for g in gone)
        if not yes:
            if output is Output.json or not sys.stdin.isatty():
                raise UsageError(
                    "bundle remove --purge deletes data for good and was not confirmed",
                    f"it would delete: {listed}",
                    "check the list, then add --yes",
                )
            out = report.console()
            out.print("[bold]--purge deletes, for good:[/]")
            for g in gone:
                for what in g["deletes"] or ["no data"]:
                    out.print(f"  {g['name']}: {what}")
            if not typer.confirm("Delete all of this?", default=False):
                raise UsageError("nothing was deleted", "the purge was not confirmed", "")
    from hzcloud import sitelock
    from hzcloud.app import _render

    progress = report.UpProgress(quiet=output is Output.json)
    try:
        with sitelock.hold(loaded.site_dir):  # never beside an `up` of the same site
            if purge:
                _render(loaded)  # the purge playbook reads the site's current inventory
            result = phase.remove(
                loaded.site, loaded.plan, loaded.site_dir, progress, purge=purge, only=only
            )
    finally:
        progress.close()
    if not result.ok:
        first = result.failures[0]
        raise HzError("bundle remove failed", first.message, "fix the cause and run it again")
    if output is Output.json:
        from hzcloud.report import print_json

        print_json(
            {
                "ok": True,
                "changed": result.changed,
                "removed": [g["name"] for g in gone],
                "purged": gone if purge else [],
            }
        )
        return
    kept = "data and credentials deleted" if purge else "data and credentials kept"
    report.console().print(
        f"removed {', '.join(g['name'] for g in gone)}: {result.changed} changes; {kept}"
    )
