"""Benchmark `hzcloud fleet up` against the same sites run one after another.

Both runs start from fresh nodes: each boots the fleet's labs from a fresh copy of the fleet
folder (empty journals), runs, and takes the labs down. The package proxies' caches stay, so
the two runs download alike.

Run as root on the lab host:
  python benchmarks/fleet.py [--fleet inventories/lab-fleet] [--phases preflight,base] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hzcloud import fleet, lab
from hzcloud.resources import resource

HZ = [sys.executable, "-m", "hzcloud"]


def fresh(source: Path, work: Path, label: str) -> tuple[Path, fleet.Fleet]:
    """A copy of the fleet folder with its labs booted."""
    folder = work / label
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("state", "keys"))
    the_fleet = fleet.load_fleet(folder)
    fleet.write_generated(the_fleet)
    for site in the_fleet.sites:
        lab.up(site.path)
    return folder, the_fleet


def measure(
    source: Path, work: Path, label: str, run: Callable[[Path, fleet.Fleet], list[float]]
) -> tuple[float, list[float], bool]:
    folder, the_fleet = fresh(source, work, label)
    try:
        t0 = time.monotonic()
        per_site = run(folder, the_fleet)
        wall = time.monotonic() - t0
        ok = all(fleet.site_status(s)[0] in ("done", "partial") for s in the_fleet.sites)
        return wall, per_site, ok
    finally:
        for site in the_fleet.sites:
            lab.down(site.path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=Path, default=resource("inventories") / "lab-fleet")
    parser.add_argument("--phases", default="preflight,base")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    source = fleet.fleet_file(args.fleet).parent

    def one_after_another(folder: Path, the_fleet: fleet.Fleet) -> list[float]:
        times = []
        for site in the_fleet.sites:
            t0 = time.monotonic()
            subprocess.run(
                [*HZ, "up", str(site.path), "--only", args.phases, "--output", "json"],
                capture_output=True,
                check=False,
            )
            times.append(time.monotonic() - t0)
        return times

    def as_a_fleet(folder: Path, the_fleet: fleet.Fleet) -> list[float]:
        result = fleet.up(the_fleet, args.phases.split(","))
        return [s.seconds for s in result.sites]

    with tempfile.TemporaryDirectory(prefix="hzcloud-fleet-bench-") as tmp:
        seq, seq_sites, seq_ok = measure(source, Path(tmp), "sequential", one_after_another)
        par, par_sites, par_ok = measure(source, Path(tmp), "fleet", as_a_fleet)
    the_fleet = fleet.load_fleet(source)
    figures = {
        "sites": [s.folder for s in the_fleet.sites],
        "waves": [list(w.sites) for w in the_fleet.waves],
        "parallel": the_fleet.parallel,
        "phases": args.phases,
        "sequential_seconds": round(seq, 1),
        "sequential_per_site": [round(s, 1) for s in seq_sites],
        "fleet_seconds": round(par, 1),
        "fleet_per_site": [round(s, 1) for s in par_sites],
        "speedup": round(seq / par, 2) if par else None,
        "ok": seq_ok and par_ok,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{len(figures['sites'])} sites, phases {args.phases}, waves {figures['waves']}")
        print(f"one after another: {seq:7.1f} s  (per site {figures['sequential_per_site']})")
        print(f"fleet up:          {par:7.1f} s  (per site {figures['fleet_per_site']})")
        print(
            f"speedup:           {figures['speedup']}x"
            + ("" if figures["ok"] else "  (a run FAILED)")
        )
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
