"""CPU seconds a command costs before it does anything: `--help`, `validate`, `plan`.

The target is 0.3 s of CPU each (user + system, interpreter start included): heavy libraries
(ansible-runner, paramiko, testinfra, pulumi, jinja2, cryptography) are imported only by the
commands that use them. CPU time, not wall time: it does not depend on what else the host runs.

usage: python benchmarks/cli_start.py [SITE]   (default: inventories/lab)
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5


def cpu_of(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    site = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "inventories" / "lab")
    hz = [sys.executable, "-m", "hzcloud"]
    os.environ.setdefault("COLUMNS", "120")
    print(f"{'command':<12} {'median CPU s':>12} {'max':>6}  ({RUNS} runs)")
    for name, args in (
        ("--help", ["--help"]),
        ("validate", ["validate", site]),
        ("plan", ["plan", site]),
    ):
        times = [cpu_of([*hz, *args]) for _ in range(RUNS)]
        print(f"{name:<12} {statistics.median(times):>12.3f} {max(times):>6.3f}")


if __name__ == "__main__":
    main()
