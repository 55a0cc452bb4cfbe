"""Benchmark: `hzcloud up` of the given phases on the lab, then the converged re-run.

    python benchmarks/up.py [--site lab] [--phases preflight,base,data] [--fresh]

--fresh rebuilds the lab first (lab down + lab up) so the first run starts from booted nodes.
Prints per-phase seconds and changed counts, the total, and the converged re-run time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

HZ = [sys.executable, "-m", "hzcloud"]


def run_up(site: str, phases: str) -> tuple[float, dict]:
    t0 = time.monotonic()
    res = subprocess.run(
        [*HZ, "up", site, "--only", phases, "--output", "json"], capture_output=True, text=True
    )
    wall = time.monotonic() - t0
    if res.returncode != 0:
        sys.exit(f"hzcloud up failed (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
    return wall, json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default="lab")
    ap.add_argument("--phases", default="preflight,base,data")
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    if args.fresh:
        subprocess.run([*HZ, "lab", "down", "--site", args.site], check=True)
        subprocess.run([*HZ, "lab", "up", "--site", args.site], check=True)
    for label in ("first run", "converged re-run"):
        wall, data = run_up(args.site, args.phases)
        print(f"{label}: {wall:.1f}s wall")
        for p in data["phases"]:
            print(
                f"  {p['name']:<11} {p['status']:<8} {p['seconds']:>7.1f}s  {p['changed']:>4} changed"
            )


if __name__ == "__main__":
    main()
