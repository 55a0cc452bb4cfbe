"""Benchmark: the storage phase (Ceph) on the lab, then rados/rbd throughput and IOPS.

    python benchmarks/storage.py [--site /path/to/site] [--seconds 10] [--no-apply]

Runs the storage playbook (as `hzcloud up` does), then again converged, then on the first mon:
`rados bench` write and sequential read, `rbd bench` 4K random write and read IOPS.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from hzcloud.executors.ansible import run_ansible

BANDWIDTH = r"Bandwidth \(MB/sec\)"


def inventory(site: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((site / "state" / "inventory.yml").read_text())["all"])


def on(site: Path, host: str, command: str, timeout: float = 600) -> str:
    # the ssh_config hzcloud rendered: the site's key, its known_hosts, user and port
    argv = ["ssh", "-F", str(site / "state" / "ssh_config"), "-o", "BatchMode=yes", host, command]
    res = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if res.returncode != 0:
        sys.exit(f"{command!r} failed on {host}: {res.stderr.strip()}")
    return res.stdout


def apply(site: Path, label: str) -> None:
    result = run_ansible("storage", site / "state", lambda _e: None)
    if not result.ok:
        sys.exit(f"storage phase failed: {result.failures}")
    print(f"storage phase, {label}: {result.seconds:.1f}s, {result.changed} changed")


def field(text: str, name: str) -> float:
    found = re.findall(rf"^{name}:\s+([\d.]+)", text, re.MULTILINE)
    return float(found[-1]) if found else float("nan")


def rados_bench(site: Path, mon: str, pool: str, seconds: int) -> None:
    run = f"hz-bench-{uuid.uuid4().hex[:6]}"
    write = on(site, mon, f"rados bench -p {pool} {seconds} write --no-cleanup --run-name {run}")
    read = on(site, mon, f"rados bench -p {pool} {seconds} seq --run-name {run}")
    on(site, mon, f"rados -p {pool} cleanup --run-name {run} >/dev/null")
    print(f"rados bench write: {field(write, BANDWIDTH):.0f} MB/s, "
          f"{field(write, 'Average IOPS'):.0f} IOPS (4 MiB objects, 16 in flight)")  # fmt: skip
    print(f"rados bench seq read: {field(read, BANDWIDTH):.0f} MB/s, "
          f"{field(read, 'Average IOPS'):.0f} IOPS")  # fmt: skip


def rbd_bench(site: Path, mon: str, pool: str) -> None:
    image = f"{pool}/hz-bench-{uuid.uuid4().hex[:6]}"
    on(site, mon, f"rbd create {image} --size 1G")
    try:
        for io in ("write", "read"):
            out = on(site, mon, f"rbd bench --io-type {io} --io-size 4K --io-pattern rand "
                                f"--io-threads 16 --io-total 64M {image}")  # fmt: skip
            summary = re.search(r"elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops/sec:\s*([\d.]+)", out)
            if summary:
                print(f"rbd bench 4K random {io}: {float(summary[3]):.0f} IOPS "
                      f"({summary[2]} ops in {summary[1]}s, 16 threads)")  # fmt: skip
            else:
                print(f"rbd bench 4K random {io}: no summary in output:\n{out[-500:]}")
    finally:
        on(site, mon, f"rbd rm --no-progress {image}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", type=Path, default=Path("/work/lab-shared"))
    ap.add_argument("--seconds", type=int, default=10, help="duration of each rados bench")
    ap.add_argument("--pool", default="kubernetes")
    ap.add_argument("--no-apply", action="store_true", help="only benchmark the running cluster")
    args = ap.parse_args()
    site = args.site.resolve()
    if not args.no_apply:
        t0 = time.monotonic()
        apply(site, "first run")
        apply(site, "converged re-run")
        print(f"both runs: {time.monotonic() - t0:.1f}s wall")
    mon = next(iter(inventory(site)["children"]["ceph_mon"]["hosts"]))
    rados_bench(site, mon, args.pool, args.seconds)
    rbd_bench(site, mon, args.pool)


if __name__ == "__main__":
    main()
