"""Executors: run one phase, stream its events, return its result. Only they touch hosts.

One interface, `run(phase, ctx, on_event) -> PhaseResult`; the engine calls `run_phase`, which
picks the executor the phase names. Each executor module is imported when a phase needs it
(ansible-runner, paramiko, testinfra and pulumi are slow to import and `plan` needs none).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hzcloud.outcome import Event, Failure, OnEvent, PhaseResult

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.phases import Phase
    from hzcloud.plan import Plan

__all__ = [
    "STOP",
    "STOPPED",
    "Event",
    "Failure",
    "OnEvent",
    "PhaseResult",
    "RunContext",
    "reached_by_terminal",
    "request_stop",
    "run_phase",
    "stop_signals",
]

# Set when the operator stops `up` (Ctrl-C, SIGINT or SIGTERM): the running phases end early,
# no new one starts. Process-wide, as the signal is; each `up` starts with it clear.
STOP = threading.Event()
STOPPED = "stopped by the operator (interrupted)"


def request_stop(again: bool = False) -> None:
    """Stop what runs: ansible-runner's runs end at their next check of STOP (its own
    cancel_callback: the playbook and its workers get SIGTERM, then runner kills the playbook's
    process group); the pulumi engine is asked as its own Ctrl-C would ask it (SIGINT: it
    cancels, its providers stop waiting for rollouts, it writes its state and exits). A Ctrl-C
    at a terminal already reached the engine (it runs in this process group): it is signalled
    only when it was not, or when asked `again` (SIGTERM: it ends now)."""
    STOP.set()
    if again:
        _signal_children("pulumi", signal.SIGTERM)
    elif not reached_by_terminal():
        _signal_children("pulumi", signal.SIGINT)


_RECEIVED: list[int] = []  # the signals that asked this process to stop, in order


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM (a supervisor, `timeout`, `systemctl stop`) stop a run the
    same way: KeyboardInterrupt in the main thread, which the engine turns into a stop. A
    SIGINT ignored from the start (a script's background job, POSIX) stays ignored. Main thread
    only."""

    def handler(signum: int, _frame: object) -> None:
        _RECEIVED.append(signum)
        raise KeyboardInterrupt

    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            saved[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, before in saved.items():
            signal.signal(sig, before)


def reached_by_terminal() -> bool:
    """Was the stop a Ctrl-C at the terminal whose foreground is this process group (so every
    process of the group, the engines and sites this one runs, had it too)?"""
    last = _RECEIVED[-1] if _RECEIVED else signal.SIGINT
    return last == signal.SIGINT and _terminal_foreground()


def _terminal_foreground() -> bool:
    """Is this process group the foreground of its terminal?"""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)  # none in CI or under a daemon
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _signal_children(name: str, sig: signal.Signals) -> list[int]:
    """Signal this process's children called NAME (their /proc comm); the ones signalled."""
    me = str(os.getpid())
    signalled = []
    for pid, comm, state, ppid in _processes():
        if comm == name and ppid == me and state != "Z":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                signalled.append(pid)
    return signalled


def end_children(name: str, seconds: float) -> None:
    """SIGTERM this process's children called NAME and wait (at most `seconds`) until they end."""
    pids = set(_signal_children(name, signal.SIGTERM))
    deadline = time.monotonic() + seconds
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids &= {pid for pid, _, state, _ in _processes() if state != "Z"}


def _processes() -> list[tuple[int, str, str, str]]:
    """(pid, comm, state, ppid) of every process, from /proc/PID/stat: "pid (comm) state ppid
    ..."; comm may hold spaces and parentheses."""
    out = []
    for stat in _proc_stats():
        pid, _, rest = stat.partition(" (")
        comm, _, after = rest.rpartition(") ")
        fields = after.split()
        if len(fields) > 1 and pid.isdigit():
            out.append((int(pid), comm, fields[0], fields[1]))
    return out


def _proc_stats() -> list[str]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/stat") as f:
                out.append(f.read())
    return out


@dataclass(frozen=True)
class RunContext:
    """What an executor gets besides its phase: the loaded site and where its state lives."""

    site: Site
    plan: Plan
    site_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.site_dir / "state"


class Executor(Protocol):
    def __call__(self, phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult: ...


def run_phase(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    """Run a phase with the executor it names (hzcloud.executors.<executor>.run)."""
    if phase.run is not None:
        return phase.run(phase, ctx, on_event)
    module = importlib.import_module(f"hzcloud.executors.{phase.executor}")
    executor: Executor = module.run
    return executor(phase, ctx, on_event)
