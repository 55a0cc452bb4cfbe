"""The `hzcloud init` conversation: asks only what it cannot guess, or takes it all from flags."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import typer

from hzcloud import report
from hzcloud.errors import UsageError
from hzcloud.initsite import (
    ServerAnswer,
    SiteAnswers,
    guess_management,
    guess_vips,
    parse_server_flag,
    site_text,
    slug,
)


@dataclass(frozen=True)
class Given:
    """What the command line already said."""

    name: str | None
    code: str | None
    servers: tuple[str, ...]
    ssh_user: str
    ssh_key: str
    management: str | None
    postgres_vip: str | None
    kubernetes_vip: str | None
    mirror: str


def _next_address(address: str) -> str:
    try:
        return str(ipaddress.IPv4Address(address) + 1)
    except ValueError:
        return ""


def ask_servers(code: str) -> tuple[ServerAnswer, ...]:
    count = 0
    while not 3 <= count <= 64:
        count = typer.prompt("How many servers (3 to 64)", default=8, type=int)
    servers: list[ServerAnswer] = []
    last_addr = ""
    for i in range(1, count + 1):
        name = typer.prompt(f"Server {i} name", default=f"{code}-{i:02d}")
        address = typer.prompt(f"  {name} address", default=_next_address(last_addr) or None)
        disks = typer.prompt(
            f"  {name} disks for Ceph (comma-separated, '-' for none)",
            default="/dev/sdb" if i <= 4 else "-",
        )
        found = tuple(d.strip() for d in disks.split(",") if d.strip() not in ("", "-"))
        servers.append(ServerAnswer(name, address, found))
        last_addr = address
    return tuple(servers)


def site_text_from(given: Given, interactive: bool) -> str:
    """site.yaml text from the flags, asking for the rest when interactive."""
    if not interactive:
        missing = [
            flag for flag, v in (("--name", given.name), ("--server", given.servers)) if not v
        ]
        if missing:
            raise UsageError(
                f"missing {' and '.join(missing)}",
                "--non-interactive never asks",
                "give --name and one --server NAME=ADDRESS[:DISK,...] per server, or --from site.yaml",
            )
    else:
        report.console().print("[bold]hzcloud init[/] — a few questions; Enter keeps the proposal.")
    name = given.name or typer.prompt("Hospital name")
    code = given.code or (
        typer.prompt("Site code", default=slug(name)) if interactive else slug(name)
    )
    servers = (
        tuple(parse_server_flag(s) for s in given.servers) if given.servers else ask_servers(code)
    )
    addrs = [s.address for s in servers]
    management = given.management or guess_management(addrs)
    ssh_user, ssh_key = given.ssh_user, given.ssh_key
    postgres_vip, kubernetes_vip, mirror = given.postgres_vip, given.kubernetes_vip, given.mirror
    if interactive:
        ssh_user = typer.prompt("SSH user", default=ssh_user)
        ssh_key = typer.prompt("SSH private key", default=ssh_key)
        management = typer.prompt("Management network", default=management or None)
    pg_guess, k8s_guess = guess_vips(management or "", addrs)
    if interactive:
        postgres_vip = postgres_vip or typer.prompt(
            "Free address for PostgreSQL clients", default=pg_guess or None
        )
        kubernetes_vip = kubernetes_vip or typer.prompt(
            "Free address for the Kubernetes API", default=k8s_guess or None
        )
        mirror = mirror or typer.prompt(
            "apt mirror/proxy URL ('-' for the servers' own)", default="-"
        )
        mirror = "" if mirror == "-" else mirror
    return site_text(
        SiteAnswers(
            name=name,
            code=code,
            servers=servers,
            ssh_user=ssh_user,
            ssh_key=ssh_key,
            management=management or "",
            postgres_vip=postgres_vip or pg_guess,
            kubernetes_vip=kubernetes_vip or k8s_guess,
            mirror=mirror,
        )
    )
