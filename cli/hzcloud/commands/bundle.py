"""`hzcloud bundle`: the clinical service bundle's entries, read and checked without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hzcloud.report import Output

if TYPE_CHECKING:
    from hzcloud.bundle import Bundle

app = typer.Typer(
    help="The clinical service bundle: list, show, validate; install, status, verify, remove.",
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
        return
    from rich.markup import escape

    from hzcloud.report import console

    out = console()
    for svc in data["services"]:
        out.print(f"[bold]{escape(svc['name'])}[/] {escape(svc['version'])}: {svc['state']}")
        for ep in svc["endpoints"]:
            out.print(f"  {escape(ep['name'])}: {escape(ep['url'])}  (CA {escape(ep['ca'])})")


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


@app.command()
def remove(site: SiteArg = Path("."), output: OutputOpt = Output.text) -> None:
    """Remove the picked services' workloads; their databases, buckets and credentials stay."""
    from hzcloud import engine, report
    from hzcloud.errors import HzError
    from hzcloud.phases import bundle as phase

    loaded = engine.load(site)
    progress = report.UpProgress(quiet=output is Output.json)
    try:
        result = phase.remove(loaded.site, loaded.plan, loaded.site_dir, progress)
    finally:
        progress.close()
    if not result.ok:
        first = result.failures[0]
        raise HzError("bundle remove failed", first.message, "fix the cause and run it again")
    report.console().print(f"removed {result.changed} resources; data and credentials kept")
