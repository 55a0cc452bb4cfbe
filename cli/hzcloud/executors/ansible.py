"""The Ansible executor: a phase's playbook through ansible-runner, its events as progress."""

from __future__ import annotations

import os
import queue
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzcloud.errors import HzError
from hzcloud.executors import STOP, STOPPED, RunContext, end_children
from hzcloud.outcome import Event, Failure, OnEvent, PhaseResult
from hzcloud.resources import resource

if TYPE_CHECKING:
    from hzcloud.phases import Phase


def playbook_for(phase: str) -> Path:
    return resource("playbooks") / f"{phase}.yml"


def _message(res: dict[str, Any]) -> str:
    for key in ("msg", "stderr", "module_stderr", "stdout"):
        val = res.get(key)
        if val:
            text = str(val).strip()
            return text.splitlines()[-1][:400] if key != "msg" else text[:400]
    return "failed"


def run(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    """The executor: the phase's playbook on every host of the rendered inventory."""
    return run_ansible(phase.playbook or phase.name, ctx.state_dir, on_event, name=phase.name)


def run_ansible(
    playbook_name: str,
    state_dir: Path,
    on_event: OnEvent,
    limit: str | None = None,
    name: str = "",
    extravars: dict[str, Any] | None = None,
) -> PhaseResult:
    """Run playbooks/<playbook_name>.yml through ansible-runner against the rendered inventory."""
    phase = name or playbook_name
    import ansible_runner  # imported here: it is slow to import and not needed by plan/validate

    playbook = playbook_for(playbook_name)
    if not playbook.exists():
        raise HzError(
            f"phase {phase} has no playbook ({playbook})",
            "this hzcloud build does not ship that phase",
            f"switch the service off in site.yaml or run `hzcloud up --only` without {phase}",
        )
    if STOP.is_set():  # the operator stopped `up` before this playbook's turn
        return PhaseResult(phase, False, 0, 0.0, {}, (Failure("", "", STOPPED),))
    private = state_dir / "runner"
    private.mkdir(parents=True, exist_ok=True)
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()
    env = {
        "ANSIBLE_CONFIG": str(state_dir / "ansible.cfg"),
        # the venv's ansible-playbook, whether or not the venv is activated
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_NOCOLOR": "1",
        # ansible-runner turns host key checking off unless told otherwise
        "ANSIBLE_HOST_KEY_CHECKING": "True",
    }
    started = time.monotonic()

    def handler(ev: dict[str, Any]) -> bool:
        events.put(ev)  # rendering happens on this thread's caller, not inside runner's loop
        return True

    def finished(_runner: Any) -> None:
        events.put(None)

    thread, runner = ansible_runner.run_async(
        private_data_dir=str(private),
        playbook=str(playbook),
        inventory=str(state_dir / "inventory.yml"),
        envvars=env,
        limit=limit,
        extravars=extravars,
        quiet=True,
        event_handler=handler,
        finished_callback=finished,
        # the operator stopped `up`: the playbook ends at runner's next check (<= 5 s)
        cancel_callback=_stopped,
        # a folder per phase: phases run at the same time, and runner's rotation of the
        # artifacts folder deletes files another phase's runner is still writing
        artifact_dir=str(private / "artifacts" / phase),
        rotate_artifacts=5,
        # one fact cache for every run (ansible-runner's default is a new one per run)
        fact_cache=str(state_dir / "facts"),
        suppress_env_files=True,
        ident=f"{phase}-{int(time.time())}",
    )
    failures: list[Failure] = []
    while True:
        try:
            ev = events.get(timeout=1.0)
        except queue.Empty:
            if not thread.is_alive():
                break
            continue
        if ev is None:
            break
        _translate(phase, ev, on_event, failures)
    thread.join()
    stats: dict[str, dict[str, Any]] = runner.stats or {}
    hosts: dict[str, dict[str, int]] = {}
    for key in ("ok", "changed", "failures", "dark", "skipped"):
        for host, n in (stats.get(key) or {}).items():
            hosts.setdefault(host, {})[key] = int(n)
    changed = sum(h.get("changed", 0) for h in hosts.values())
    ok = runner.status == "successful" and runner.rc == 0
    if runner.status == "canceled":
        failures.insert(0, Failure("", "", STOPPED))
    elif not ok and not failures:
        failures.append(
            Failure(
                "",
                "",
                f"ansible-runner ended {runner.status} (rc {runner.rc}); see {private}/artifacts/{phase}",
            )
        )
    return PhaseResult(phase, ok, changed, time.monotonic() - started, hosts, tuple(failures))


def _stopped() -> bool:
    """ansible-runner's cancel check. Runner ends a cancelled playbook with SIGKILL to its
    process group, but ansible-core's workers each run in a session of their own (setsid), so
    the task they run would go on, its command too. SIGTERM first: ansible-playbook passes it to
    its workers, which end their own process groups; runner's SIGKILL then finds it gone."""
    if not STOP.is_set():
        return False
    end_children(_COMM, 10)
    return True


# ansible-playbook as /proc names it (a process name is cut to 15 characters)
_COMM = "ansible-playbook"[:15]


def _translate(phase: str, ev: dict[str, Any], on_event: OnEvent, failures: list[Failure]) -> None:
    kind = ev.get("event", "")
    data = ev.get("event_data") or {}
    host = str(data.get("host") or "")
    task = str(data.get("task") or "")
    if kind == "playbook_on_task_start":
        on_event(Event(phase, "task", task=task))
    elif kind == "runner_on_ok":
        changed = bool((data.get("res") or {}).get("changed"))
        on_event(Event(phase, "changed" if changed else "ok", host, task))
    elif kind == "runner_on_failed" and not data.get("ignore_errors"):
        msg = _message(data.get("res") or {})
        failures.append(Failure(host, task, msg))
        on_event(Event(phase, "failed", host, task, msg))
    elif kind == "runner_on_unreachable":
        msg = _message(data.get("res") or {})
        failures.append(Failure(host, task, f"unreachable: {msg}"))
        on_event(Event(phase, "unreachable", host, task, msg))
