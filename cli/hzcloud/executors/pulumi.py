"""The Pulumi executor: Automation API, a local file backend in state/pulumi, inline programs.

One stack per phase per site: project `hzcloud-<phase>`, stack `<site code>`, its state in
<site>/state/pulumi, encrypted with the site's pulumi_passphrase (secrets.yaml); the engine and
its plugins come from the site's artifacts folder (an air-gapped site downloads nothing).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from hzcloud.errors import HzError
from hzcloud.executors import STOP, STOPPED, RunContext
from hzcloud.outcome import Event, Failure, OnEvent, PhaseResult
from hzcloud.resources import resource

if TYPE_CHECKING:
    from hzcloud.phases import Phase

PULUMI_BINARIES = ("pulumi", "pulumi-resource-kubernetes")


_SDK_COROUTINES = ("run_in_stack", "run_pulumi_func")


def _quiet_unfinished_program(unraisable: Any) -> None:
    """After a failed update (a rollout past its deadline), Pulumi's SDK leaves its inline
    program's coroutine unfinished; at exit Python reports its shutdown error ("no running
    event loop") with a traceback on stderr, after hzcloud's own message. The failure itself is
    reported by the stack's result: that noise goes, anything else is reported as Python does."""
    obj = getattr(unraisable, "object", None)
    # which coroutine Python names is the outermost one collected: run_in_stack (seen in CI)
    # or the run_pulumi_func it awaits
    if getattr(obj, "__qualname__", "") in _SDK_COROUTINES and isinstance(
        unraisable.exc_value, RuntimeError
    ):
        return
    sys.__unraisablehook__(unraisable)


sys.unraisablehook = _quiet_unfinished_program


def project_of(phase: str) -> str:
    return f"hzcloud-{phase}"


def run(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    """The executor: `up` of the phase's inline program as the site's stack of its project."""
    from hzcloud.phases import artifacts_path
    from hzcloud.secrets import read_secrets

    if phase.program is None:
        raise HzError(f"phase {phase.name} has no Pulumi program", "a bug in its module", "")
    artifacts = artifacts_path(ctx.site, ctx.site_dir)
    passphrase = read_secrets(ctx.site_dir)["pulumi_passphrase"]
    project = project_of(phase.name)
    stack = run_pulumi(
        phase.name,
        ctx.state_dir,
        project,
        ctx.plan.site,
        phase.program(ctx.site, ctx.plan, ctx.site_dir),
        on_event,
        artifacts,
        passphrase,
    )
    if not stack.ok or not phase.playbook:
        return stack
    # then Ansible on what the stack made, with its outputs (the cloud phase: link, backups)
    from hzcloud.executors.ansible import run_ansible

    if phase.after_stack is not None:
        made = outputs(ctx.state_dir, project, ctx.plan.site, artifacts, passphrase)
        phase.after_stack(ctx.site, ctx.plan, ctx.site_dir, made)
    hosts = run_ansible(phase.playbook, ctx.state_dir, on_event, name=phase.name)
    return PhaseResult(
        phase.name,
        hosts.ok,
        stack.changed + hosts.changed,
        stack.seconds + hosts.seconds,
        hosts.hosts,
        hosts.failures,
    )


def load_stack_module(name: str) -> ModuleType:
    """A program from stacks/<name>.py (shipped in the wheel, so loaded by path)."""
    path = resource("stacks") / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"hzcloud_stacks.{name}", path)
    if spec is None or spec.loader is None:
        raise HzError(f"stack {name} not found", f"no {path}", "reinstall hzcloud")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check_artifacts(artifacts: Path) -> None:
    missing = [b for b in PULUMI_BINARIES if not (artifacts / "bin" / b).exists()]
    if missing:
        raise HzError(
            f"artifacts folder {artifacts} lacks {', '.join(missing)}",
            "the Pulumi phases run the pulumi engine and its kubernetes plugin from there",
            f"fill it with `scripts/build-artifacts {artifacts}` (or from the release downloads)",
        )


def _workspace_env(state_dir: Path, artifacts: Path, passphrase: str) -> dict[str, str]:
    backend = state_dir / "pulumi"
    backend.mkdir(parents=True, exist_ok=True)
    return {
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": passphrase,
        "PULUMI_HOME": str(state_dir / "pulumi-home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        # plugins are found on PATH ("ambient"): an air-gapped site downloads nothing
        "PATH": os.pathsep.join(
            [str(artifacts / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        ),
    }


def run_pulumi(
    phase: str,
    state_dir: Path,
    project: str,
    stack_name: str,
    program: Callable[[], None],
    on_event: OnEvent,
    artifacts: Path,
    passphrase: str,
    action: str = "up",
) -> PhaseResult:
    """Run `up` (or `destroy`, `preview`) of an inline program; engine events become Events."""
    from pulumi import automation as auto

    check_artifacts(artifacts)
    if STOP.is_set():  # the operator stopped `up` before this stack's turn
        return PhaseResult(phase, False, 0, 0.0, {}, (Failure("", "pulumi " + action, STOPPED),))
    env = _workspace_env(state_dir, artifacts, passphrase)
    work = state_dir / "pulumi-work" / project
    work.mkdir(parents=True, exist_ok=True)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work),
        pulumi_home=env["PULUMI_HOME"],
        env_vars=env,
        pulumi_command=auto.PulumiCommand(root=str(artifacts), skip_version_check=True),
        project_settings=auto.ProjectSettings(
            name=project,
            runtime="python",
            backend=auto.ProjectBackend(url=env["PULUMI_BACKEND_URL"]),
        ),
    )
    # the engine reads these from the process env too (plugin lookup on PATH)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    started = time.monotonic()
    failures: list[Failure] = []

    said: list[str] = []  # the engine's diagnostics, kept for a post-mortem
    log = work / f"{action}.log"

    def handle(ev: Any) -> None:
        if ev.diagnostic_event is not None:
            d = ev.diagnostic_event
            said.append(f"{d.severity} {d.urn or ''}: {d.message.strip()}")
        _translate(phase, ev, on_event, failures)

    try:
        stack = auto.create_or_select_stack(
            stack_name=stack_name, project_name=project, program=program, opts=opts
        )
        if action == "destroy":
            res: Any = stack.destroy(on_event=handle, color="never")
            changes = res.summary.resource_changes or {}
        elif action == "preview":
            res = stack.preview(on_event=handle, color="never")
            changes = res.change_summary or {}
        else:
            # refreshed first: what the program made may have gone under it (a rebuilt
            # cluster, a deleted bucket), and only the real world says what is missing
            res = stack.up(on_event=handle, color="never", refresh=True)
            changes = res.summary.resource_changes or {}
        changed = sum(int(n) for op, n in changes.items() if op not in ("same", "refresh"))
        _keep_log(log, said, "")
        return PhaseResult(phase, True, changed, time.monotonic() - started)
    except auto.CommandError as exc:
        _keep_log(log, said, str(exc))
        failures.sort(key=_rank)  # the resource's own words first, the summary last
        if STOP.is_set():  # cancelled by the operator: that is why, whatever the engine says
            failures.insert(0, Failure("", "pulumi " + action, STOPPED))
        text = [line for line in str(exc).strip().splitlines() if line.strip()]
        failures.append(
            Failure(
                "",
                "pulumi " + action,
                (failures[0].message if failures else (text[-1] if text else "pulumi failed"))[:400]
                + f" (the engine's log: {log})",
            )
        )
        return PhaseResult(phase, False, 0, time.monotonic() - started, {}, tuple(failures))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _keep_log(path: Path, said: list[str], error: str) -> None:
    """The last run's diagnostics (Pulumi masks secret values in them) and its error, 0600."""
    text = "\n".join(said) + ("\n--- the command failed:\n" + error if error else "") + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def outputs(
    state_dir: Path, project: str, stack_name: str, artifacts: Path, passphrase: str
) -> dict[str, Any]:
    from pulumi import automation as auto

    env = _workspace_env(state_dir, artifacts, passphrase)
    work = state_dir / "pulumi-work" / project
    stack = auto.select_stack(
        stack_name=stack_name,
        project_name=project,
        program=lambda: None,
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(work),
            pulumi_home=env["PULUMI_HOME"],
            env_vars=env,
            pulumi_command=auto.PulumiCommand(root=str(artifacts), skip_version_check=True),
        ),
    )
    return {k: v.value for k, v in stack.outputs().items()}


def _translate(phase: str, ev: Any, on_event: OnEvent, failures: list[Failure]) -> None:
    if ev.resource_pre_event is not None:
        meta = ev.resource_pre_event.metadata
        name = str(meta.urn).rsplit("::", 1)[-1]
        if _op(meta.op) in QUIET_OPS:
            return
        on_event(Event(phase, "task", task=f"{_op(meta.op)} {meta.type} {name}"))
    elif ev.res_outputs_event is not None:
        meta = ev.res_outputs_event.metadata
        name = str(meta.urn).rsplit("::", 1)[-1]
        if _op(meta.op) not in QUIET_OPS:
            on_event(Event(phase, "changed", "pulumi", f"{_op(meta.op)} {meta.type} {name}"))
    elif ev.res_op_failed_event is not None:
        meta = ev.res_op_failed_event.metadata
        failures.append(
            Failure("pulumi", f"{_op(meta.op)} {meta.urn}", "resource operation failed")
        )
    elif ev.diagnostic_event is not None and ev.diagnostic_event.severity == "error":
        msg = ev.diagnostic_event.message.strip()
        failures.append(Failure("pulumi", ev.diagnostic_event.urn or "", msg[:400]))
        on_event(Event(phase, "failed", "pulumi", ev.diagnostic_event.urn or "", msg[:200]))


def _rank(failure: Failure) -> int:
    """Which failure leads the report: a resource's own error (why it failed) before the
    engine's "resource operation failed", and the stack's summary ("update failed") last."""
    if failure.message == "resource operation failed":
        return 1
    if not failure.task or "::pulumi:pulumi:Stack::" in failure.task:
        return 2
    return 0


# a resource found as the program wants it: no change to report
QUIET_OPS = ("same", "refresh", "read")


def _op(op: Any) -> str:
    return str(getattr(op, "value", op)).lower().rsplit(".", 1)[-1]
