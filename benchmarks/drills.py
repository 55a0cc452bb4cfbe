"""Benchmark: the power-cut and partition drills on a converged lab, as clients see them.

    python benchmarks/drills.py [--site lab] [--only pg-kill,pg-cut,etcd-kill,redis-kill] [--json]

Per drill: the victim (found from the plan and the clusters, not by name), the longest time
without an acknowledged write, writes acknowledged, acknowledged writes lost, failed writes.
Each killed node is booted again (`hzcloud lab up`) and rejoins before the next drill.
The lab must be up and converged (`hzcloud up SITE --only preflight,base,data`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lab"))

import hzrun  # the lab tests' helpers: one implementation of each drill


def _back(site: Path, drill: hzrun.Drill) -> None:
    if drill.name != "pg leader cut off":  # healed by the drill itself
        hzrun.node_back(site, drill.victim)
    hzrun.wait_for("PostgreSQL healthy", lambda: hzrun.pg_cluster_healthy(site), 180)


DRILLS: dict[str, Callable[[Path], hzrun.Drill]] = {
    "pg-kill": hzrun.drill_pg_leader_killed,
    "pg-cut": hzrun.drill_pg_leader_cut,
    "etcd-kill": hzrun.drill_etcd_member_killed,
    "redis-kill": hzrun.drill_redis_primary_killed,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default="lab")
    ap.add_argument("--only", default=",".join(DRILLS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    site = Path(args.site).resolve()
    results = []
    for name in args.only.split(","):
        drill = DRILLS[name](site)
        results.append(drill)
        if not args.json:
            print(drill.line(), flush=True)
        _back(site, drill)
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in results], indent=2))


if __name__ == "__main__":
    main()
