"""The `hzcloud init` conversation: asks only what it cannot guess, or takes it all from flags.

Every answer is checked when it is given and asked again with the reason, so nothing typed is
lost to a mistake found at the end; proposals follow what the operator typed (sg-01 at
10.20.0.11 → sg-02 at 10.20.0.12).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

import typer
import yaml
from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

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
from hzcloud.model import MAX_SERVERS, MIN_SERVERS, Networks, Role, Site

T = TypeVar("T")

HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
CODE = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
DEVICE = re.compile(r"/dev/[A-Za-z0-9/_.-]+")
RESERVED = {"all", "ungrouped", "localhost"} | {str(r).replace("-", "_") for r in Role}
# Ceph keeps this many copies, each on its own server with a disk (the wizard does not ask).
REPLICAS = Site.model_fields["services"].default.ceph.replicas
OTHER_NETWORKS = {
    "the pod network": Networks.model_fields["pod_cidr"].default,
    "the service network": Networks.model_fields["service_cidr"].default,
}


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


def stdin_is_terminal() -> bool:
    """Whether someone can answer: a script's pipe or /dev/null cannot."""
    return sys.stdin.isatty()


def ask(text: str, check: Callable[[str], T], default: str | None = None) -> T:
    """Ask until check accepts the answer; check raises typer.BadParameter with the reason."""
    return typer.prompt(text, default=default, value_proc=lambda v: check(v.strip()))  # type: ignore[no-any-return]


def _bad(reason: str) -> typer.BadParameter:
    return typer.BadParameter(reason)


def _address(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise _bad(f"'{text}' is not an IPv4 address: write one such as 10.20.0.11") from None


def _network(text: str) -> IPv4Network:
    try:
        return IPv4Network(text)
    except ValueError:
        try:
            loose = IPv4Network(text, strict=False)
        except ValueError:
            raise _bad(
                f"'{text}' is not a network: write one in CIDR form such as 10.20.0.0/24"
            ) from None
        raise _bad(f"{text} has host bits set: the network is {loose}") from None


def next_name(last: str, code: str, i: int, taken: set[str]) -> str:
    """The next name in the operator's pattern (db-02 → db-03), else CODE-NN."""
    m = re.fullmatch(r"(.*?)(\d+)", last)
    width, n = (len(m.group(2)), int(m.group(2)) + 1) if m else (2, i)
    stem = m.group(1) if m else f"{code}-"
    while f"{stem}{n:0{width}d}" in taken:
        n += 1
    return f"{stem}{n:0{width}d}"


def next_address(last: str, taken: set[str]) -> str:
    """The address after the operator's last one that no server has yet, or '' for none."""
    try:
        addr = IPv4Address(last) + 1
        while str(addr) in taken:
            addr += 1
    except ValueError:  # '' or past 255.255.255.255
        return ""
    return str(addr)


def ask_count() -> int:
    def check(text: str) -> int:
        if not text.isdigit():
            raise _bad(f"'{text}' is not a number: give a whole number from 3 to 64")
        n = int(text)
        if n < MIN_SERVERS:
            raise _bad(
                f"a site needs at least {MIN_SERVERS} servers: PostgreSQL, etcd, Redis and Ceph "
                "each keep a quorum of 3"
            )
        if n > MAX_SERVERS:
            raise _bad(
                f"one site holds at most {MAX_SERVERS} servers: split the hospital into "
                "several sites"
            )
        return n

    return ask(f"How many servers ({MIN_SERVERS} to {MAX_SERVERS})", check, default="8")


def _check_server_name(code: str, names: list[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text in names:
            raise _bad(f"'{text}' is already server {names.index(text) + 1}'s name")
        if not HOSTNAME.fullmatch(text):
            raise _bad(
                f"'{text}' is not a host name: lowercase letters, digits and '-', "
                "at most 63 characters"
            )
        if text in RESERVED:
            raise _bad(f"'{text}' is also an Ansible group or pattern: choose another name")
        if yaml.safe_load(text) != text:
            raise _bad(f"'{text}' reads as a number or keyword in YAML: e.g. {code}-{text}")
        return text

    return check


def _check_address(owners: dict[str, str], management: IPv4Network | None) -> Callable[[str], str]:
    def check(text: str) -> str:
        addr = _address(text)
        if str(addr) in owners:
            raise _bad(f"{addr} is already {owners[str(addr)]}'s address")
        if management is not None and addr not in management:
            raise _bad(f"{addr} is outside the management network {management}")
        return str(addr)

    return check


def _check_disks(storage: int, left: int) -> Callable[[str], tuple[str, ...]]:
    """storage: earlier servers with a disk; left: servers still to come after this one."""

    def check(text: str) -> tuple[str, ...]:
        found = tuple(d.strip() for d in text.split(",") if d.strip() not in ("", "-"))
        for disk in found:
            if ".." in disk.split("/"):
                raise _bad(f"'{disk}': '..' is not allowed in a disk path")
            if not DEVICE.fullmatch(disk):
                example = disk.rsplit("/")[-1] or "sdb"
                raise _bad(f"'{disk}' is not a device path: write e.g. /dev/{example}")
        if len(set(found)) != len(found):
            raise _bad("a disk is listed twice")
        if storage + bool(found) + left < REPLICAS:
            raise _bad(
                f"Ceph keeps {REPLICAS} copies, each on a server with a disk: give one here "
                f"(with '-', at most {storage + left} servers could have one)"
            )
        return found

    return check


def ask_servers(code: str, management: IPv4Network | None) -> tuple[ServerAnswer, ...]:
    count = ask_count()
    servers: list[ServerAnswer] = []
    last_name, last_addr, last_disks = "", "", "/dev/sdb"
    for i in range(1, count + 1):
        names = [s.name for s in servers]
        owners = {s.address: s.name for s in servers}
        name = ask(
            f"Server {i} name",
            _check_server_name(code, names),
            default=next_name(last_name, code, i, set(names)) if last_name else f"{code}-{i:02d}",
        )
        address = ask(
            f"  {name} address",
            _check_address(owners, management),
            default=next_address(last_addr, set(owners)) or None,
        )
        disks = ask(
            f"  {name} disks for Ceph (comma-separated, '-' for none)",
            _check_disks(sum(1 for s in servers if s.disks), count - i),
            default=last_disks,
        )
        servers.append(ServerAnswer(name, address, disks))
        last_name, last_addr, last_disks = name, address, ", ".join(disks) or "-"
    return tuple(servers)


def _check_management(servers: tuple[ServerAnswer, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        net = _network(text)
        for s in servers:
            addr = IPv4Address(s.address) if _is_address(s.address) else None
            if addr is None:
                continue
            if addr not in net:
                raise _bad(f"{s.name}'s address {addr} is outside {net}")
            if addr in (net.network_address, net.broadcast_address):
                raise _bad(f"{s.name}'s address {addr} is the network or broadcast address")
        for what, other in OTHER_NETWORKS.items():
            if net.overlaps(other):
                raise _bad(f"{net} overlaps {what} {other}: choose another management network")
        return str(net)

    return check


def _is_address(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


def _check_vip(
    servers: tuple[ServerAnswer, ...], management: str, other: str = ""
) -> Callable[[str], str]:
    by_addr = {s.address: s.name for s in servers}

    def check(text: str) -> str:
        addr = _address(text)
        if str(addr) in by_addr:
            raise _bad(f"{addr} is {by_addr[str(addr)]}'s address: a VIP needs a free address")
        if other and str(addr) == other:
            raise _bad(f"{addr} is already the PostgreSQL address: give each VIP its own")
        try:
            net = IPv4Network(management)
        except ValueError:
            return str(addr)
        if addr not in net or addr in (net.network_address, net.broadcast_address):
            raise _bad(f"{addr} is not a usable address of the management network {net}")
        return str(addr)

    return check


def _check_mirror(text: str) -> str:
    if text == "-":
        return ""
    try:
        TypeAdapter(AnyHttpUrl).validate_python(text)
    except ValidationError:
        raise _bad(
            f"'{text}' is not an http:// or https:// URL: write e.g. http://10.20.0.5:3142, "
            "or '-' for none"
        ) from None
    return text


def _check_text(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not pattern.fullmatch(text):
            raise _bad(f"'{text}' is not {what}")
        return text

    return check


def _check_name(text: str) -> str:
    if not text or len(text) > 120:
        raise _bad("the hospital's name is 1 to 120 characters")
    return text


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
    elif not stdin_is_terminal():
        raise UsageError(
            "hzcloud init asks its questions on a terminal, and stdin is not one",
            "nothing was asked and nothing was written",
            "use -y with --name and --server flags, or --from site.yaml",
        )
    else:
        report.console().print("[bold]hzcloud init[/] — a few questions; Enter keeps the proposal.")
    name = given.name or ask("Hospital name", _check_name)
    code = given.code or (
        ask(
            "Site code",
            _check_text(CODE, "a site code: lowercase letters, digits and '-', e.g. stgeorge"),
            default=slug(name),
        )
        if interactive
        else slug(name)
    )
    given_net = None
    if given.management:
        try:
            given_net = IPv4Network(given.management)
        except ValueError:
            given_net = None  # the site file's check names it
    servers = (
        tuple(parse_server_flag(s) for s in given.servers)
        if given.servers
        else ask_servers(code, given_net)
    )
    addrs = [s.address for s in servers]
    management = given.management or guess_management(addrs)
    ssh_user, ssh_key = given.ssh_user, given.ssh_key
    postgres_vip, kubernetes_vip, mirror = given.postgres_vip, given.kubernetes_vip, given.mirror
    if interactive:
        ssh_user = ask(
            "SSH user",
            _check_text(USER, "a Unix user name such as root or hzadmin"),
            default=ssh_user,
        )
        ssh_key = ask("SSH private key", _check_text(re.compile(r"\S.*"), "a path"), ssh_key)
        if not given.management:
            management = ask(
                "Management network", _check_management(servers), default=management or None
            )
    pg_guess, k8s_guess = guess_vips(management or "", addrs)
    if interactive:
        postgres_vip = postgres_vip or ask(
            "Free address for PostgreSQL clients",
            _check_vip(servers, management or ""),
            default=pg_guess or None,
        )
        kubernetes_vip = kubernetes_vip or ask(
            "Free address for the Kubernetes API",
            _check_vip(servers, management or "", postgres_vip or ""),
            default=(k8s_guess if k8s_guess != postgres_vip else None) or None,
        )
        mirror = mirror or ask(
            "apt mirror/proxy URL ('-' for the servers' own)", _check_mirror, default="-"
        )
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
