"""One run at a time per site: two `hzcloud up` on one site fight over the same hosts.

Measured in the lab: two runs started 11 s apart both created Ceph OSDs on the same disks, and
every OSD creation of the slower run failed ("entity osd.N exists but key does not match").
The lock is an flock on the site folder itself: it writes no file (a refused run leaves the
folder as it was) and goes with the process that holds it, so a killed run or a power cut of
the control node never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hzcloud import journal
from hzcloud.errors import HzError


class SiteBusy(HzError):
    """Another run holds the site; nothing was touched. Retrying later is the fix."""

    exit_code = 3


def _holder(state_dir: Path) -> str:
    """The run working on the site, from the journal's newest record (run ids end in a pid)."""
    try:
        records = journal.records(state_dir)
    except (OSError, ValueError):
        records = []
    if records and records[-1].status == "running":
        run = records[-1].run
        return f"run {run} (pid {run.rsplit('-', 1)[-1]}, phase {records[-1].phase})"
    return "another hzcloud run"


@contextmanager
def hold(site_dir: Path) -> Iterator[None]:
    """Hold the site's run lock for the block, or raise SiteBusy at once (never waits)."""
    fd = os.open(site_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SiteBusy(
                f"the site {site_dir} is busy",
                f"{_holder(site_dir / 'state')} is working on it",
                "wait for that run to end (its journal is state/journal.jsonl), then run again",
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
