"""Journal and phase selection: resume after a failure, refuse unmet prerequisites."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from hzcloud import journal
from hzcloud.engine import load, select_phases
from hzcloud.errors import UsageError
from hzcloud.resources import resource


def rec(run: str, phase: str, status: str, plan_hash: str = "h") -> journal.PhaseRecord:
    return journal.PhaseRecord(run, phase, status, time.time(), time.time(), plan_hash=plan_hash)


def test_resume_skips_what_the_failed_run_finished(tmp_path: Path) -> None:
    for r in (
        rec("1", "preflight", "ok"),
        rec("1", "base", "ok"),
        rec("1", "data", "running"),
        rec("1", "data", "failed"),
    ):
        journal.append(tmp_path, r)
    assert journal.resume_point(tmp_path, "h") == {"preflight", "base"}


def test_a_run_that_died_mid_phase_resumes_too(tmp_path: Path) -> None:
    journal.append(tmp_path, rec("1", "base", "ok"))
    journal.append(tmp_path, rec("1", "data", "running"))
    assert journal.resume_point(tmp_path, "h") == {"base"}


def test_a_finished_run_resumes_nothing(tmp_path: Path) -> None:
    journal.append(tmp_path, rec("1", "base", "ok"))
    journal.append(tmp_path, rec("1", "data", "ok"))
    assert journal.resume_point(tmp_path, "h") == set()


def test_a_changed_plan_resumes_nothing(tmp_path: Path) -> None:
    journal.append(tmp_path, rec("1", "base", "ok"))
    journal.append(tmp_path, rec("1", "data", "failed"))
    assert journal.resume_point(tmp_path, "other") == set()


def test_skipped_phases_of_a_resumed_run_stay_done(tmp_path: Path) -> None:
    journal.append(tmp_path, rec("1", "base", "ok"))
    journal.append(tmp_path, rec("1", "data", "failed"))
    journal.append(tmp_path, rec("2", "base", "skipped"))
    journal.append(tmp_path, rec("2", "data", "failed"))
    assert journal.resume_point(tmp_path, "h") == {"base"}


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    journal.append(tmp_path, rec("1", "base", "ok"))
    with (tmp_path / journal.JOURNAL_FILE).open("a") as fh:
        fh.write('{"run": "1", "phase": "da')
    assert [r.phase for r in journal.records(tmp_path)] == ["base"]


@pytest.fixture
def lab_site(tmp_path: Path) -> Path:
    shutil.copy(resource("inventories") / "lab" / "site.yaml", tmp_path / "site.yaml")
    return tmp_path


def test_only_refuses_a_phase_whose_prerequisite_never_ran(lab_site: Path) -> None:
    loaded = load(lab_site)
    with pytest.raises(UsageError) as err:
        select_phases(loaded.plan, ["data"], lab_site / "state")
    assert "needs base" in err.value.what and "--only base,data" in err.value.fix


def test_only_accepts_a_prerequisite_done_before(lab_site: Path) -> None:
    loaded = load(lab_site)
    journal.append(lab_site / "state", rec("1", "base", "ok"))
    assert [p.name for p in select_phases(loaded.plan, ["data"], lab_site / "state")] == ["data"]


def test_unknown_phase_is_bad_input(lab_site: Path) -> None:
    loaded = load(lab_site)
    with pytest.raises(UsageError) as err:
        select_phases(loaded.plan, ["dta"], lab_site / "state")
    assert "unknown phase dta" in err.value.what and "preflight" in err.value.fix


def test_a_phase_this_build_cannot_run_is_refused_before_anything_runs(lab_site: Path) -> None:
    loaded = load(lab_site)
    with pytest.raises(UsageError) as err:
        select_phases(loaded.plan, None, lab_site / "state")
    assert "phase cloud" in err.value.what and "--only preflight,base" in err.value.fix
