"""Running the real `hzcloud` command from lab tests: `up --output json` and `lab ssh`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HZ = [sys.executable, "-m", "hzcloud"]


def up_json(site: Path, only: str, expect_ok: bool = True) -> tuple[int, dict[str, Any]]:
    """`hzcloud up SITE --only ONLY --output json`: exit code and the parsed summary."""
    res = subprocess.run(
        [*HZ, "up", str(site), "--only", only, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    try:
        data: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"hzcloud up gave no JSON (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
    if expect_ok:
        assert res.returncode == 0, json.dumps(data, indent=2) + res.stderr
    return res.returncode, data


def node_run(
    site: Path, node: str, command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a shell command line on a lab node (`hzcloud lab ssh NODE -- sh -c COMMAND`).

    `lab ssh` quotes each word it is given, so the command line goes to `sh -c` as one word;
    it starts in /tmp (postgres-owned commands cannot read root's home).
    """
    return subprocess.run(
        [*HZ, "lab", "ssh", "--site", str(site), node, "--", "sh", "-c", f"cd /tmp && {command}"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
