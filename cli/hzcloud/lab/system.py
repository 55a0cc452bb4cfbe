"""Running host commands and reading host facts for the lab."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from hzcloud.lab.errors import LabError

REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "apt-cacher-ng": "apt-cacher-ng",
    "ip": "iproute2",
    "losetup": "mount",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure becomes a LabError carrying its stderr."""
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else {**os.environ, **env},
        )
    except FileNotFoundError as exc:
        raise LabError(
            f"{argv[0]} is not installed",
            cause=str(exc),
            fix=f"apt-get install {REQUIRED_TOOLS.get(argv[0], argv[0])}",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` did not finish in {timeout} s") from exc
    if check and result.returncode != 0:
        raise LabError(
            f"`{' '.join(argv)}` failed (exit {result.returncode})",
            cause=(result.stderr or result.stdout).strip()[-2000:],
        )
    return result


def check_host() -> None:
    """Stop early, with the fix, when the host cannot run the lab."""
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root",
            cause="systemd-nspawn, bridges and loop devices need it",
            fix="run as root (sudo hzcloud lab ...)",
        )
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise LabError(
            "the lab's host tools are missing",
            cause=", ".join(missing),
            fix=f"apt-get install -y {' '.join(missing)}",
        )


def pid_alive(pid: int | None, needle: str | None = None) -> bool:
    """True when PID runs (not a zombie) and, if given, its command line contains needle."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        return False
    return needle is None or needle in " ".join(command_line(pid))


def command_line(pid: int | str) -> list[str]:
    """A process's argv ([] when it is gone or has none)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def find_pids(needle: str) -> list[int]:
    """PIDs whose command line contains needle (a path only this lab uses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != os.getpid()
            and pid_alive(int(entry.name), needle)
        ):
            found.append(int(entry.name))
    return sorted(found)


def mounts_under(prefix: Path) -> list[Path]:
    """Mount points at or below prefix, deepest first (so they unmount in order)."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = Path(line.split()[1].replace("\\040", " "))
        if point == prefix or prefix in point.parents:
            points.append(point)
    return sorted(set(points), key=lambda p: len(p.parts), reverse=True)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def cgroup_roots() -> list[Path]:
    """Every cgroup hierarchy of the host: each v1 controller, the named systemd one, cgroup2."""
    roots = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, fstype, _options = line.split()[:4]
        if fstype in ("cgroup", "cgroup2"):
            roots.append(Path(point))
    return roots


_CGROUP_LOCK = threading.Lock()


def make_cgroup(group: Path) -> None:
    """Create a cgroup and its parents; in a v1 cpuset hierarchy each inherits its parent's CPUs
    and memory nodes (a new cpuset is empty, and a process cannot join an empty one).

    Nodes boot in parallel threads: one lock makes a group whole (made and filled) before another
    thread makes a child of it, which would copy an empty parent or, once a child is filled, make
    filling the parent fail with EBUSY. A parent left empty by an interrupted run is filled too.
    """
    chain = []
    for path in (group, *group.parents):
        if path.is_dir() and not (path.parent / "cgroup.procs").exists():
            break  # the hierarchy's root: the kernel fills it
        chain.append(path)
    with _CGROUP_LOCK:
        for path in reversed(chain):
            path.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (path / name).exists() and not (path / name).read_text().strip():
                    (path / name).write_text((path.parent / name).read_text())


def spawn_detached(
    argv: Sequence[str], log: Path, user: str | None = None, cgroups: Sequence[Path] = ()
) -> int:
    """Start argv in its own session (and cgroups), not as our child (nothing to reap); its PID."""
    for group in cgroups:
        make_cgroup(group)
    script = (
        'log=$1; shift; n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs"; '
        'shift; n=$((n-1)); done; "$@" </dev/null >>"$log" 2>&1 & echo $!'
    )
    proc = subprocess.run(
        ["sh", "-c", script, "sh", str(log), str(len(cgroups)), *map(str, cgroups), *argv],
        capture_output=True,
        text=True,
        start_new_session=True,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"could not start {argv[0]}", cause=proc.stderr.strip())
    return int(proc.stdout.strip())


def remove_cgroups(base: Path) -> None:
    """Remove an empty cgroup tree, leaves first."""
    if not base.is_dir():
        return
    groups = [p for p in base.rglob("*") if p.is_dir()] + [base]
    for group in sorted(groups, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            group.rmdir()
