"""A failed stack update leaves Pulumi's inline-program coroutine unfinished; its shutdown error
at exit must not print a traceback after hzcloud's own message (never a traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# the SDK's coroutine, as it is left: suspended, and failing in its cleanup without a loop
SCRIPT = """
import asyncio, types
{hook}

@types.coroutine
def _suspend():
    yield

async def {name}():
    try:
        await _suspend()
    finally:
        asyncio.get_running_loop()

left = {name}()
left.send(None)
del left
print("done")
"""


def _stderr(hook: str, name: str = "run_pulumi_func") -> str:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(hook=hook, name=name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and res.stdout.strip() == "done", res.stderr
    return res.stderr


@pytest.mark.parametrize("name", ["run_pulumi_func", "run_in_stack"])
def test_the_sdks_unfinished_program_says_nothing_at_exit(name: str) -> None:
    assert "Traceback" in _stderr("", name), "the case no longer arises as it did"
    assert _stderr("import hzcloud.executors.pulumi", name) == ""


def test_any_other_unraisable_error_is_still_reported() -> None:
    said = _stderr("import hzcloud.executors.pulumi", name="someone_elses")
    assert "Traceback" in said and "no running event loop" in said
