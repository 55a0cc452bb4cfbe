"""Benchmark `hzcloud lab up`: per-node boot time, total time and idle memory (PSS) per node.

Run as root on the lab host:  python benchmarks/lab_up.py [--site DIR] [--rebuild-image] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from hzcloud import lab
from hzcloud.lab import image
from hzcloud.lab.node import container_init


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def node_pss_mib(nspawn_pid: int) -> float:
    """PSS of every process in the node's PID namespace (the nspawn supervisor excluded)."""
    init = container_init(nspawn_pid)
    if init is None:
        return 0.0
    ns = os.readlink(f"/proc/{init}/ns/pid")
    total = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "ns/pid") == ns:
                    total += pss_kib(int(proc.name))
            except OSError:
                continue
    return total / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("/tmp/hzcloud-lab-bench"))
    parser.add_argument(
        "--rebuild-image",
        action="store_true",
        help="build the base image anew (in a cache of its own)",
    )
    parser.add_argument(
        "--settle", type=float, default=10, help="seconds idle before measuring memory"
    )
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    if (args.site / "site.yaml").exists():
        lab.down(args.site)
    if args.rebuild_image:
        # A cache of its own: labs running from the shared cache keep their lower dir.
        image.CACHE_DIR = Path(f"/var/cache/hzcloud/lab-bench-{os.getpid()}")

    boots: dict[str, float] = {}
    image_seconds = 0.0

    def on_event(event: lab.LabEvent) -> None:
        nonlocal image_seconds
        if event.subject == "image" and event.seconds is not None:
            image_seconds = event.seconds
        elif event.message.startswith("up at") and event.seconds is not None:
            boots[event.subject] = event.seconds

    started = time.monotonic()
    result = lab.up(args.site, on_event)
    total = time.monotonic() - started
    time.sleep(args.settle)
    state = json.loads((args.site / "state/lab/lab.json").read_text())
    memory = {name: node_pss_mib(int(rec["pid"])) for name, rec in sorted(state["nodes"].items())}
    down_seconds = None
    if not args.keep:
        t0 = time.monotonic()
        lab.down(args.site)
        down_seconds = time.monotonic() - t0
    if args.rebuild_image and not args.keep:
        shutil.rmtree(image.CACHE_DIR)

    figures = {
        "image_seconds": round(image_seconds, 1),
        "up_seconds": round(total, 2),
        "down_seconds": round(down_seconds, 2) if down_seconds is not None else None,
        "nodes": {
            n.name: {
                "boot_seconds": round(boots.get(n.name, 0.0), 2),
                "idle_pss_mib": round(memory.get(n.name, 0.0), 1),
            }
            for n in result.nodes
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{'node':<8} {'boot s':>7} {'PSS MiB':>8}")
    for name, fig in figures["nodes"].items():  # type: ignore[union-attr]
        print(f"{name:<8} {fig['boot_seconds']:>7.2f} {fig['idle_pss_mib']:>8.1f}")
    print(
        f"base image: {figures['image_seconds']} s ({'built' if args.rebuild_image else 'cached'})"
    )
    print(f"lab up total: {figures['up_seconds']} s for {len(result.nodes)} nodes")
    if down_seconds is not None:
        print(f"lab down: {figures['down_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
