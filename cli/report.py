"""Everything hzcloud prints: errors, plans, summaries. Engine code never prints."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

from hzcloud.errors import HzError, SiteError
from hzcloud.plan import Plan
from rich.console import Console
from rich.markup import escape
from rich.table import Table


class Output(StrEnum):
    text = "text"
    json = "json"


def console(stderr: bool = False) -> Console:
    # highlight=False: plain lines in pipes and CI logs stay free of colour codes
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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
