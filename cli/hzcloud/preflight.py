"""Preflight: every server checked in parallel over SSH before anything changes anywhere."""

from __future__ import annotations

import errno
import logging
import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko

from hzcloud import phases
from hzcloud.model import Site
from hzcloud.plan import NodePlan, Plan
from hzcloud.render import ssh_key_path

# paramiko logs a traceback for every refused connection; findings say it once, plainly.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

MIN_CPUS = 2
MIN_RAM_MIB = 3800
MIN_ROOT_FREE_MIB = 4096
MAX_CLOCK_SKEW_S = 2.0


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    ok: bool
    blocking: bool
    detail: str


_KNOWN_HOSTS_LOCK = threading.Lock()


def _connect(
    node: NodePlan, site: Site, site_dir: Path, known_hosts: Path, timeout: float
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    # A key seen before must match (a changed key is refused); a first contact is recorded.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        node.address,
        port=site.ssh.port,
        username=site.ssh.user,
        key_filename=str(ssh_key_path(site, site_dir)),
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        look_for_keys=False,
        allow_agent=False,
    )
    _record_host_key(client, node.address, site.ssh.port, known_hosts)
    return client


def _record_host_key(
    client: paramiko.SSHClient, address: str, port: int, known_hosts: Path
) -> None:
    transport = client.get_transport()
    if transport is None:
        return
    key = transport.get_remote_server_key()
    name = address if port == 22 else f"[{address}]:{port}"
    with _KNOWN_HOSTS_LOCK:
        keys = paramiko.HostKeys()
        if known_hosts.exists():
            keys.load(str(known_hosts))
        if keys.lookup(name) and key.get_name() in (keys.lookup(name) or {}):
            return
        with known_hosts.open("a") as fh:
            fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")


def _run(client: paramiko.SSHClient, command: str, timeout: float = 15) -> tuple[int, str]:
    _in, out, err = client.exec_command(command, timeout=timeout)
    text = out.read().decode(errors="replace")
    rc = out.channel.recv_exit_status()
    return rc, text + err.read().decode(errors="replace") if rc else text


def _reason(exc: Exception) -> str:
    """Why a connection failed, in words (paramiko says "[Errno None] Unable to connect")."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = {e.errno for e in exc.errors.values() if isinstance(e, OSError)}
        if errno.ECONNREFUSED in errors:
            return "connection refused (is sshd running and on that port?)"
        return "no route or no answer (is the server on and the address right?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer in time (is the server on, and the address right?)"
    return str(exc) or type(exc).__name__


def check_node(
    node: NodePlan, site: Site, site_dir: Path, known_hosts: Path, timeout: float = 10
) -> list[Finding]:
    """All checks of one server; a failed connection is one blocking finding."""
    found: list[Finding] = []

    def add(check: str, ok: bool, detail: str, blocking: bool = True) -> None:
        found.append(Finding(node.name, check, ok, blocking and not ok, detail))

    try:
        client = _connect(node, site, site_dir, known_hosts, timeout)
    except paramiko.BadHostKeyException:
        add(
            "ssh",
            False,
            f"host key of {node.address} CHANGED since first contact; refusing "
            f"(if the server was reinstalled, remove its line from {known_hosts})",
        )
        return found
    except paramiko.AuthenticationException:
        add("ssh", False, f"key {ssh_key_path(site, site_dir)} refused for user {site.ssh.user}")
        return found
    except (OSError, paramiko.SSHException) as exc:
        add("ssh", False, f"cannot reach {node.address}:{site.ssh.port}: {_reason(exc)}")
        return found
    try:
        add("ssh", True, f"{site.ssh.user}@{node.address}")
        sudo = "" if site.ssh.user == "root" else "sudo -n "
        if sudo:
            rc, _ = _run(client, "sudo -n true")
            add(
                "sudo",
                rc == 0,
                "passwordless sudo" if rc == 0 else "sudo asks for a password: allow NOPASSWD",
            )
        rc, osr = _run(client, ". /etc/os-release && echo $ID $VERSION_ID")
        add(
            "os",
            osr.strip() == "debian 12",
            osr.strip() or "unknown",
            blocking=osr.strip() != "debian 12",
        )
        rc, cpus = _run(client, "nproc")
        n = int(cpus.strip() or 0)
        add("cpu", n >= MIN_CPUS, f"{n} CPUs (min {MIN_CPUS})", blocking=False)
        rc, mem = _run(client, "awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo")
        mib = int(mem.strip() or 0)
        add("memory", mib >= MIN_RAM_MIB, f"{mib} MiB (min {MIN_RAM_MIB})")
        rc, free = _run(client, "df -Pm / | awk 'NR==2 {print $4}'")
        fmib = int(free.strip() or 0)
        add("disk", fmib >= MIN_ROOT_FREE_MIB, f"{fmib} MiB free on / (min {MIN_ROOT_FREE_MIB})")
        before = time.time()
        rc, remote = _run(client, "date +%s.%N")
        after = time.time()
        skew = abs(float(remote.strip() or 0) - (before + after) / 2)
        add("clock", skew <= MAX_CLOCK_SKEW_S, f"skew {skew:.2f} s (max {MAX_CLOCK_SKEW_S})")
        found.extend(_check_ports(client, node, sudo))
        found.extend(_check_disks(client, node, sudo))
    finally:
        client.close()
    return found


def _check_ports(client: paramiko.SSHClient, node: NodePlan, sudo: str) -> list[Finding]:
    _rc, out = _run(client, f"{sudo}ss -Hltnp")
    listening: dict[int, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        text = parts[3].rsplit(":", 1)[-1]
        proc = line.split('users:(("', 1)[1].split('"', 1)[0] if 'users:(("' in line else "?"
        if text.isdigit():
            listening.setdefault(int(text), proc)
    found = []
    by_role = phases.role_ports()
    for role in node.roles:
        for spec in by_role.get(role, []):
            port = spec.single
            if port is None or not spec.owners:
                continue
            holder = listening.get(port)
            ok = holder is None or holder in spec.owners
            detail = f"{port} free" if holder is None else f"{port} held by {holder}"
            found.append(
                Finding(
                    node.name,
                    f"port {port}",
                    ok,
                    not ok,
                    detail if ok else f"{detail}; {role} needs it: stop that service",
                )
            )
    return found


def _check_disks(client: paramiko.SSHClient, node: NodePlan, sudo: str) -> list[Finding]:
    found = []
    for disk in node.disks:
        q = shlex.quote(disk)
        _rc, kind = _run(
            client,
            f"if [ -b {q} ]; then echo block; elif [ -f {q} ]; then echo file; else echo missing; fi",
        )
        kind = kind.strip()
        if kind == "missing":
            found.append(
                Finding(
                    node.name,
                    f"disk {disk}",
                    False,
                    True,
                    f"{disk} does not exist: correct servers[].disks in site.yaml",
                )
            )
            continue
        _rc, sig = _run(client, f"{sudo}blkid -p -o value -s TYPE {q} 2>/dev/null; true")
        sig = sig.strip()
        if sig == "ceph_bluestore" or (not sig and kind == "file"):
            detail = "Ceph OSD already" if sig else "empty (file)"
            found.append(Finding(node.name, f"disk {disk}", True, False, detail))
        elif sig:
            found.append(
                Finding(
                    node.name,
                    f"disk {disk}",
                    False,
                    True,
                    f"{disk} holds {sig}: hzcloud never wipes data; wipe it by hand "
                    f"(wipefs -a {disk}) if it is really free",
                )
            )
        else:
            found.append(Finding(node.name, f"disk {disk}", True, False, f"{kind}, empty"))
    return found


def run_preflight(site: Site, plan: Plan, site_dir: Path, state_dir: Path) -> list[Finding]:
    """Check every server at once; the caller stops the run on any blocking finding."""
    known_hosts = state_dir / "known_hosts"
    with ThreadPoolExecutor(max_workers=min(32, len(plan.nodes))) as pool:
        results = list(pool.map(lambda n: check_node(n, site, site_dir, known_hosts), plan.nodes))
    return [f for group in results for f in group]
