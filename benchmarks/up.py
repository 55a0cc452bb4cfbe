"""Benchmark: `hzcloud up` of the site (every phase it plans, or --phases), then the converged
re-run; per phase, per node, and the critical path through the phase graph.

    python benchmarks/up.py [--site lab] [--phases preflight,base,data] [--fresh]

--fresh rebuilds the lab first (lab down + lab up) so the first run starts from booted nodes.
The critical path is the chain of dependent phases whose seconds add up to the most: storage,
data and kubernetes run at the same time after base, so the slowest of them sets the pace.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

HZ = [sys.executable, "-m", "hzcloud"]


def run_up(site: str, phases: str | None) -> tuple[float, dict[str, Any]]:
    only = ["--only", phases] if phases else []
    t0 = time.monotonic()
    res = subprocess.run(
        [*HZ, "up", site, *only, "--output", "json"], capture_output=True, text=True
    )
    wall = time.monotonic() - t0
    if res.returncode != 0:
        sys.exit(f"hzcloud up failed (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
    return wall, json.loads(res.stdout)


def critical_path(graph: dict[str, list[str]], seconds: dict[str, float]) -> list[str]:
    """The chain of phases (each after the one before) with the largest sum of seconds."""
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(name: str) -> tuple[float, list[str]]:
        if name not in best:
            before = [longest(d) for d in graph.get(name, []) if d in seconds]
            total, chain = max(before, default=(0.0, []))
            best[name] = (total + seconds[name], [*chain, name])
        return best[name]

    return max((longest(n) for n in seconds), default=(0.0, []))[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default="lab")
    ap.add_argument("--phases", default=None, help="default: every phase the site plans")
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    if args.fresh:
        subprocess.run([*HZ, "lab", "down", "--site", args.site], check=True)
        subprocess.run([*HZ, "lab", "up", "--site", args.site], check=True)
    plan = json.loads(
        subprocess.run(
            [*HZ, "plan", args.site, "--output", "json"], capture_output=True, text=True, check=True
        ).stdout
    )
    graph = {p["name"]: p["depends_on"] for p in plan["phases"]}
    for label in ("first run", "converged re-run"):
        wall, data = run_up(args.site, args.phases)
        print(f"{label}: {wall:.1f}s wall")
        seconds = {p["name"]: float(p["seconds"]) for p in data["phases"]}
        for p in data["phases"]:
            print(
                f"  {p['name']:<11} {p['status']:<8} {p['seconds']:>7.1f}s  {p['changed']:>4} changed"
            )
        path = critical_path(graph, seconds)
        print(
            f"  critical path: {' -> '.join(path)} "
            f"({sum(seconds[n] for n in path):.0f}s of {wall:.0f}s wall)"
        )
        # per node: the journal keeps each phase's counts per host (status shows phases only)
        journal = f"{args.site}/state/journal.jsonl"
        per_node: dict[str, int] = {}
        with open(journal) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        for rec in records:
            if rec.get("run") == data["run"] and rec.get("status") in ("ok", "failed"):
                for host, counts in (rec.get("hosts") or {}).items():
                    per_node[host] = per_node.get(host, 0) + int(counts.get("changed", 0))
        if per_node:
            print(
                "  changed per node: " + ", ".join(f"{h}={n}" for h, n in sorted(per_node.items()))
            )


if __name__ == "__main__":
    main()
