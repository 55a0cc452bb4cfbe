"""The lab's cgroups on this host's real cgroup v1 cpuset hierarchy (what nodes are booted into)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hzcloud.lab.system import cgroup_roots, make_cgroup, remove_cgroups


def _cpuset_root() -> Path | None:
    """The v1 cpuset hierarchy (a cgroup2 root has cgroup.controllers, a v1 one has not)."""
    v1 = [r for r in cgroup_roots() if not (r / "cgroup.controllers").exists()]
    return next((r for r in v1 if (r / "cpuset.mems").exists()), None)


@pytest.fixture
def top() -> Iterator[Path]:
    root = _cpuset_root()
    if root is None or os.geteuid() != 0:
        reason = "needs root and a cgroup v1 cpuset hierarchy (as the lab does)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this: {reason}")
        pytest.skip(reason)
    group = root / f"hzcloud-test-{uuid.uuid4().hex[:8]}"
    yield group
    remove_cgroups(group)
    assert not group.exists()


def _whole(group: Path) -> bool:
    return all((group / name).read_text().strip() for name in ("cpuset.cpus", "cpuset.mems"))


def test_nodes_booted_in_parallel_each_get_a_whole_cpuset(top: Path) -> None:
    # Before the lock, CI's first lab boot on a fresh host failed here: EBUSY, or an empty cpuset
    # that no node could join. 30 rounds of 8 threads made it happen several times locally.
    for round_ in range(30):
        lab = top / f"r{round_}" / "lab-x"
        nodes = [lab / f"node{k}" for k in range(8)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(make_cgroup, nodes))
        empty = [g for g in (top, lab.parent, lab, *nodes) if not _whole(g)]
        assert not empty, f"round {round_}: empty cpusets {empty}"


def test_a_parent_left_empty_by_an_interrupted_run_is_filled(top: Path) -> None:
    top.mkdir()  # made, never filled: a run killed between mkdir and write
    assert not _whole(top)
    make_cgroup(top / "lab-y" / "node0")
    assert _whole(top)
    assert _whole(top / "lab-y" / "node0")
    with subprocess.Popen(["sleep", "30"]) as proc:  # a process can join it
        try:
            (top / "lab-y" / "node0" / "cgroup.procs").write_text(str(proc.pid))
        finally:
            proc.kill()
