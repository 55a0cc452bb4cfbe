"""Ctrl-C during `hzcloud up`: the running phases stop within seconds, none starts, the journal
says which ones did not finish, the exit code is 130 and no traceback is printed; the next `up`
resumes. The Ansible path is ansible-runner's own cancel on a real playbook."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hzcloud import executors, journal
from hzcloud.executors import ansible as ansible_exec
from hzcloud.resources import resource


@pytest.fixture(autouse=True)
def _fresh_stop() -> None:
    executors.STOP.clear()
    yield
    executors.STOP.clear()


def test_a_running_playbook_is_cancelled_by_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A playbook that would run 120 s ends within seconds of the stop, reported as stopped,
    and the command its task ran ends too (ansible's worker runs in a session of its own)."""
    book = tmp_path / "slow.yml"
    book.write_text(
        textwrap.dedent(
            """\
            - hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - name: A long task
                  ansible.builtin.command: sleep 119.37
            """
        )
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "inventory.yml").write_text(
        f"all:\n  hosts:\n    localhost:\n      ansible_python_interpreter: {sys.executable}\n"
    )
    (state / "ansible.cfg").write_text("[defaults]\n")
    monkeypatch.setattr(ansible_exec, "playbook_for", lambda _name: book)
    seen: list[str] = []

    def stop_once_started(ev: executors.Event) -> None:
        seen.append(ev.task)
        if ev.kind == "task" and ev.task == "A long task":
            threading.Timer(1.0, executors.request_stop).start()

    t0 = time.monotonic()
    result = ansible_exec.run_ansible("slow", state, stop_once_started, name="slow")
    took = time.monotonic() - t0
    assert "A long task" in seen
    assert not result.ok
    assert result.failures[0].message == executors.STOPPED
    assert took < 30, f"the playbook ran on for {took:.0f} s after the stop"
    assert not _running("sleep", "119.37"), "the task's command outlived the stop"
    # and nothing new starts once stopped
    again = ansible_exec.run_ansible("slow", state, lambda _e: None, name="slow")
    assert not again.ok and again.seconds == 0.0


def _running(*argv: str) -> list[int]:
    """The processes running exactly argv."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"{entry.path}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:-1] == [a.encode() for a in argv]:
                    found.append(int(entry.name))
    return found


RUNNER = """
import signal, sys, threading
# as started from a terminal or a supervisor: a background job of a script (scripts/test runs
# the unit tests as one) starts with SIGINT ignored, and `up` leaves it so (POSIX)
signal.signal(signal.SIGINT, signal.default_int_handler)
from hzcloud import app, engine, executors
from hzcloud.outcome import Event, PhaseResult

def fake_run(phase, ctx, on_event):  # stands in for a long phase: waits until stopped
    print(f"started {phase.name}", flush=True)
    if phase.name == "preflight":
        return PhaseResult(phase.name, True, 0, 0.0)
    executors.STOP.wait(120)
    return PhaseResult(phase.name, False, 0, 1.0, failures=(
        executors.Failure("", "", executors.STOPPED),))

engine.run_phase = fake_run
engine.check_needs = lambda _l, _c: None
sys.argv = ["hzcloud", "up", sys.argv[1]]
app.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_stops_up_and_the_journal_says_where(
    tmp_path: Path, sig: signal.Signals
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.yaml").write_text((resource("inventories") / "lab" / "site.yaml").read_text())
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(site)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    started = []
    deadline = time.monotonic() + 60
    while "started base" not in started and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        started.append(line.strip())
    assert "started base" in started, started
    t0 = time.monotonic()
    proc.send_signal(sig)  # as `kill`, a supervisor or a script's `timeout` sends it
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 130, (out, err)
    assert took < 15, f"up ran on for {took:.0f} s after {sig.name}"
    assert "Traceback" not in err, err
    assert "stopped by the operator" in err and "resumes" in err, err
    assert "STOPPED:" in out, out
    latest = journal.latest(site / "state")
    assert latest["preflight"].status == "ok"
    assert latest["base"].status == "stopped"
    not_started = [p for p, r in latest.items() if p not in ("preflight", "base")]
    assert not_started and all(latest[p].status == "stopped" for p in not_started)
    assert all(latest[p].error.get("note") == "not run: up was stopped" for p in not_started)
    # what `status` shows, for an integrator
    status = subprocess.run(
        [sys.executable, "-m", "hzcloud", "status", str(site), "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = {p["name"]: p["status"] for p in json.loads(status.stdout)["phases"]}
    assert shown["base"] == "stopped" and shown["preflight"] == "ok"
    # and the next run resumes: preflight runs again (it always does), base is not skipped
    assert journal.resume_point(site / "state", latest["base"].plan_hash) >= {"preflight"}
    assert "base" not in journal.resume_point(site / "state", latest["base"].plan_hash)
