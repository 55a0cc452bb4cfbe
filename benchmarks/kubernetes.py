"""Benchmark: the kubernetes phase on the lab, where its time goes, then the platform phase.

    python benchmarks/kubernetes.py [--site lab] [--fresh] [--power-cut] [--tasks 12]
                                    [--no-apply] [--no-echo] [--keep] [--json]

Runs `hzcloud up --only kubernetes` twice (the first run, then converged: 0 changed), each
with its seconds, changed count per node, busy seconds per node and the slowest tasks (from
ansible-runner's events: a task's wall time is from its start to the next task's start).
--fresh first rebuilds the lab (lab down, lab up, `up --only preflight,base`), so the first run
meets fresh nodes. --power-cut then cuts every node's power (`lab kill`), boots them (`lab up`)
and runs the phase a third time (0 changed). Then, unless --no-echo, the platform phase's stack
(the echo canary) from nothing, a request to its ClusterIP from a node, a second `up` (no
changes), and `destroy` unless --keep (then `up` brings it back).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from hzcloud import engine
from hzcloud import phases as registry
from hzcloud.executors.pulumi import outputs, project_of, run_pulumi
from hzcloud.secrets import read_secrets

PROJECT = project_of("platform")
HZ = [sys.executable, "-m", "hzcloud"]


def hz(*args: str) -> str:
    res = subprocess.run([*HZ, *args], capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        sys.exit(
            f"hzcloud {' '.join(args)} failed (rc {res.returncode}):\n{res.stdout}{res.stderr}"
        )
    return res.stdout


def on(
    site: Path, host: str, command: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # the ssh_config hzcloud rendered: the site's key, its known_hosts, user and port
    argv = ["ssh", "-F", str(site / "state" / "ssh_config"), "-o", "BatchMode=yes", host, command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def profile(events_dir: Path, top: int) -> dict[str, Any]:
    """Slowest tasks and busy seconds per host, from one ansible-runner run's job events."""
    events = sorted(
        (json.loads(f.read_text()) for f in events_dir.glob("*.json")),
        key=lambda e: int(e["counter"]),
    )
    starts: list[tuple[float, str]] = []
    per_host: dict[str, float] = {}
    slowest_host: dict[str, tuple[float, str]] = {}
    for ev in events:
        data = ev.get("event_data") or {}
        at = datetime.fromisoformat(ev["created"]).timestamp()
        if ev["event"] == "playbook_on_task_start":
            starts.append((at, str(data.get("task"))))
        elif ev["event"] in ("runner_on_ok", "runner_on_failed") and data.get("duration"):
            host, took = str(data.get("host")), float(data["duration"])
            per_host[host] = per_host.get(host, 0.0) + took
            task = str(data.get("task"))
            if took > slowest_host.get(task, (0.0, ""))[0]:
                slowest_host[task] = (took, host)
    end = datetime.fromisoformat(events[-1]["created"]).timestamp() if events else 0.0
    walls: dict[str, float] = {}
    for (at, task), (nxt, _) in zip(starts, [*starts[1:], (end, "")], strict=True):
        walls[task] = walls.get(task, 0.0) + nxt - at
    ranked = sorted(walls.items(), key=lambda kv: -kv[1])[:top]
    return {
        "tasks": len(starts),
        "slowest_tasks": [
            {
                "task": task,
                "wall_s": round(wall, 1),
                "slowest_host": slowest_host.get(task, (0.0, ""))[1],
                "slowest_host_s": round(slowest_host.get(task, (0.0, ""))[0], 1),
            }
            for task, wall in ranked
        ],
        "busy_s_per_node": {h: round(s, 1) for h, s in sorted(per_host.items())},
    }


def run_phase(site: Path, top: int) -> dict[str, Any]:
    """`hzcloud up --only kubernetes`: seconds, changed per node, the profile of that run."""
    runs = site / "state" / "runner" / "artifacts" / "kubernetes"
    before = set(runs.glob("*")) if runs.exists() else set()
    t0 = time.monotonic()
    data = json.loads(hz("up", str(site), "--only", "kubernetes", "--output", "json"))
    wall = time.monotonic() - t0
    phase = next(p for p in data["phases"] if p["name"] == "kubernetes")
    new = sorted(set(runs.glob("*")) - before, key=lambda p: p.stat().st_mtime)
    per_node: dict[str, int] = {}
    with (site / "state" / "journal.jsonl").open() as fh:
        for line in fh:
            rec = json.loads(line) if line.strip() else {}
            if rec.get("run") == data["run"] and rec.get("phase") == "kubernetes":
                for host, counts in (rec.get("hosts") or {}).items():
                    per_node[host] = int(counts.get("changed", 0))
    return {
        "seconds": round(float(phase["seconds"]), 1),
        "wall_s": round(wall, 1),
        "changed": int(phase["changed"]),
        "changed_per_node": dict(sorted(per_node.items())),
        **(profile(new[-1] / "job_events", top) if new else {}),
    }


def echo_stack(site: Path, action: str) -> Any:
    """Run `action` of the platform phase's stack, as `hzcloud up` runs it; the PhaseResult."""
    loaded = engine.load(site)
    phase = registry.phase("platform")
    assert phase.program is not None
    return run_pulumi(
        "platform",
        site / "state",
        PROJECT,
        loaded.plan.site,
        phase.program(loaded.site, loaded.plan, loaded.site_dir),
        lambda _e: None,
        site / loaded.site.artifacts,
        read_secrets(site)["pulumi_passphrase"],
        action=action,
    )


def echo_answer(site: Path, host: str, address: str, tries: int = 60) -> str:
    """GET http://<ClusterIP>/ from a node (python3: the nodes have no curl)."""
    probe = (
        'python3 -c "import urllib.request as u; '
        f"print(u.urlopen('http://{address}/', timeout=3).read().decode())\""
    )
    for _ in range(tries):
        res = on(site, host, probe)
        if res.returncode == 0:
            return res.stdout.strip()
        time.sleep(1)
    raise RuntimeError(f"no answer from {address} on {host}: {res.stderr.strip()[-300:]}")


def echo(site: Path, keep: bool) -> dict[str, Any]:
    times: dict[str, Any] = {}
    first = yaml.safe_load((site / "state" / "inventory.yml").read_text())["all"]
    server = next(iter(first["children"]["k8s_server"]["hosts"]))
    agent = next(iter(first["children"]["k8s_agent"]["hosts"] or {server: None}))
    echo_stack(site, "destroy")  # from nothing (the platform phase of `up` may have made it)
    for label in ("pulumi_up", "pulumi_up_again"):
        result = echo_stack(site, "up")
        if not result.ok:
            sys.exit(f"pulumi up failed: {result.failures}")
        times[f"{label}_s"] = round(result.seconds, 1)
        times[f"{label}_changed"] = result.changed
        if label == "pulumi_up":
            loaded = engine.load(site)
            address = outputs(
                site / "state",
                PROJECT,
                loaded.plan.site,
                site / loaded.site.artifacts,
                read_secrets(site)["pulumi_passphrase"],
            )["cluster_ip"]
            t0 = time.monotonic()
            times["answer"] = echo_answer(site, agent, address)
            times["answer_s"] = round(time.monotonic() - t0, 1)
    if not keep:
        result = echo_stack(site, "destroy")
        times["pulumi_destroy_s"] = round(result.seconds, 1)
        times["pulumi_destroy_changed"] = result.changed
        echo_stack(site, "up")  # the site as `up` left it
    return times


def show(label: str, run: dict[str, Any]) -> None:
    print(
        f"{label}: {run['seconds']:.1f}s phase ({run['wall_s']:.1f}s wall), "
        f"{run['changed']} changed, {run.get('tasks', '?')} tasks"
    )
    print(
        "  changed per node: " + ", ".join(f"{h}={n}" for h, n in run["changed_per_node"].items())
    )
    busy = run.get("busy_s_per_node") or {}
    print("  busy s per node:  " + ", ".join(f"{h}={s}" for h, s in busy.items()))
    for t in run.get("slowest_tasks", []):
        print(
            f"  {t['wall_s']:6.1f}s  {t['task'][:70]:<70} "
            f"(slowest {t['slowest_host']} {t['slowest_host_s']}s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=Path("lab"))
    parser.add_argument("--fresh", action="store_true", help="lab down/up and base first")
    parser.add_argument("--power-cut", action="store_true", help="then kill every node, up again")
    parser.add_argument("--tasks", type=int, default=12, help="how many slowest tasks to show")
    parser.add_argument("--no-apply", action="store_true", help="skip the kubernetes phase")
    parser.add_argument("--no-echo", action="store_true", help="skip the platform stack")
    parser.add_argument("--keep", action="store_true", help="leave the echo stack up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    site = args.site.resolve()
    out: dict[str, Any] = {}
    if args.fresh:
        hz("lab", "down", "--site", str(site))
        hz("lab", "up", "--site", str(site))
        t0 = time.monotonic()
        hz("up", str(site), "--only", "preflight,base")
        out["base_s"] = round(time.monotonic() - t0, 1)
    if not args.no_apply:
        out["first"] = run_phase(site, args.tasks)
        out["converged"] = run_phase(site, args.tasks)
    if args.power_cut:
        nodes = json.loads(hz("plan", str(site), "--output", "json"))["nodes"]
        for node in nodes:
            hz("lab", "kill", node["name"], "--site", str(site))
        hz("lab", "up", "--site", str(site))
        out["after_power_cut"] = run_phase(site, args.tasks)
    if not args.no_echo:
        out["echo"] = echo(site, args.keep)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    if "base_s" in out:
        print(f"base (fresh nodes): {out['base_s']}s")
    for key, label in (
        ("first", "kubernetes, first run"),
        ("converged", "kubernetes, converged re-run"),
        ("after_power_cut", "kubernetes, after every node's power cut"),
    ):
        if key in out:
            show(label, out[key])
    for key, value in (out.get("echo") or {}).items():
        print(f"{key:26} {value}")


if __name__ == "__main__":
    main()
