"""Journal and phase selection: resume after a failure, refuse unmet prerequisites."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import pick_services

from hzcloud import engine as engine_module
from hzcloud import journal, sitelock
from hzcloud import phases as registry
from hzcloud.engine import dry_run, load, select_phases, up
from hzcloud.errors import UsageError
from hzcloud.outcome import PhaseResult
from hzcloud.resources import resource
from hzcloud.sitelock import SiteBusy


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


def _unavailable_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A phase this build cannot run (the bundle phase stands in for it)."""
    spec = replace(registry.phase("bundle"), unavailable="not available yet: a test says so")
    monkeypatch.setitem(registry.BY_NAME, "bundle", spec)


def test_dry_run_lists_what_is_missing_and_unavailable_and_writes_nothing(
    lab_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unavailable_bundle(monkeypatch)
    pick_services(lab_site, ["patient-index"])
    site_yaml = (lab_site / "site.yaml").read_text()
    (lab_site / "artifacts").mkdir()  # there, but empty: each file is named
    loaded = load(lab_site)
    before = sorted(p.name for p in lab_site.iterdir())
    dry = dry_run(loaded, None)
    assert [p.name for p in dry.phases][-2:] == ["bundle", "verify"]
    assert [n for n, _ in dry.unavailable] == ["bundle"]
    missing = {n.path.relative_to(lab_site).as_posix() for n in dry.missing}
    assert {"artifacts/bin/kubelet", "artifacts/bin/pulumi"} <= missing
    assert "scripts/build-artifacts" in dry.missing[0].fix
    assert sorted(p.name for p in lab_site.iterdir()) == before == ["artifacts", "site.yaml"]
    assert (lab_site / "site.yaml").read_text() == site_yaml


def test_missing_artifacts_stop_up_before_anything_is_written(lab_site: Path) -> None:
    pick_services(lab_site, [])  # then the Kubernetes artifacts are the only need
    loaded = load(lab_site)
    prepared: list[str] = []
    with pytest.raises(UsageError) as err:
        up(loaded, None, lambda _e: None, prepare=lambda _l: prepared.append("render"))
    assert (
        err.value.what == f"{lab_site / 'artifacts'} is missing (Kubernetes: the artifacts folder)"
    )
    assert "scripts/build-artifacts" in err.value.fix
    assert prepared == []
    assert sorted(p.name for p in lab_site.iterdir()) == ["site.yaml"]


def test_an_unavailable_phase_fails_alone_and_the_rest_of_the_graph_runs(
    lab_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phase not in this build fails; everything not depending on it completes."""
    _unavailable_bundle(monkeypatch)
    pick_services(lab_site, ["patient-index"])
    loaded = load(lab_site)
    ran: list[str] = []

    def fake_run(phase: registry.Phase, ctx: object, on_event: object) -> PhaseResult:
        ran.append(phase.name)  # stands in for the executors: no host here
        return PhaseResult(phase.name, True, 0, 0.0)

    monkeypatch.setattr(engine_module, "run_phase", fake_run)
    monkeypatch.setattr(engine_module, "check_needs", lambda _l, _c: None)
    result = up(loaded, None, lambda _e: None, prepare=lambda _l: None)
    status = {r.phase: r.status for r in result.records}
    assert status["bundle"] == "failed"
    assert "not available yet" in result.failures[0].message
    assert status["verify"] == "blocked"  # it depends on bundle
    assert {"preflight", "base", "storage", "data", "kubernetes", "platform"} <= set(ran)
    assert all(status[n] == "ok" for n in ran)
    assert not result.ok
    latest = journal.latest(lab_site / "state")
    assert latest["bundle"].error["message"].startswith("not available yet")
    assert latest["verify"].status == "blocked"


def test_a_phase_named_with_only_runs_even_when_the_failed_run_finished_it(
    lab_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify failed after platform completed: `--only platform,verify` runs platform again
    (the operator asks for it), and what it changed is kept per task in the journal."""
    from hzcloud.outcome import Event

    loaded = load(lab_site)
    for name in ("preflight", "base", "storage", "data", "kubernetes", "platform"):
        journal.append(
            lab_site / "state", rec("1", name, "ok", engine_module.plan_hash(loaded.plan))
        )
    journal.append(
        lab_site / "state", rec("1", "verify", "failed", engine_module.plan_hash(loaded.plan))
    )
    ran: list[str] = []

    def fake_run(
        phase: registry.Phase, ctx: object, on_event: Callable[[Event], None]
    ) -> PhaseResult:
        ran.append(phase.name)  # stands in for the executors: no host here
        on_event(Event(phase.name, "changed", "pulumi", f"create thing {phase.name}"))
        return PhaseResult(phase.name, True, 1, 0.0)

    monkeypatch.setattr(engine_module, "run_phase", fake_run)
    monkeypatch.setattr(engine_module, "check_needs", lambda _l, _c: None)
    result = up(loaded, ["platform", "verify"], lambda _e: None, prepare=lambda _l: None)
    assert ran == ["platform", "verify"]
    assert [r.changes for r in result.records] == [
        ["pulumi: create thing platform"],
        ["pulumi: create thing verify"],
    ]
    assert journal.latest(lab_site / "state")["platform"].changes == [
        "pulumi: create thing platform"
    ]


def test_status_refuses_a_journal_that_is_not_a_file(lab_site: Path) -> None:
    """A FIFO where the journal should be: status says so at once instead of hanging."""
    import os
    import subprocess
    import sys

    state = lab_site / "state"
    state.mkdir()
    os.mkfifo(state / journal.JOURNAL_FILE)
    res = subprocess.run(
        [sys.executable, "-m", "hzcloud", "status", str(lab_site)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2, res.stderr
    assert "journal.jsonl" in res.stderr and "Traceback" not in res.stderr


def test_a_second_run_on_a_busy_site_is_refused_and_touches_nothing(lab_site: Path) -> None:
    """Another process holds the site (as a running `hzcloud up` does): refused at once, named."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from hzcloud import journal, sitelock\n"
            "site = Path(sys.argv[1])\n"
            "with sitelock.hold(site):\n"
            "    rec = journal.PhaseRecord(journal.new_run_id(), 'base', 'running', time.time())\n"
            "    journal.append(site / 'state', rec)\n"
            "    print('held', flush=True); time.sleep(60)",
            str(lab_site),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = sorted(p.relative_to(lab_site) for p in lab_site.rglob("*"))
        loaded = load(lab_site)
        prepared: list[str] = []
        with pytest.raises(SiteBusy) as err:
            up(loaded, ["preflight"], lambda _e: None, prepare=lambda _l: prepared.append("x"))
        assert f"pid {holder.pid}, phase base" in err.value.cause and err.value.exit_code == 3
        assert (
            prepared == []
            and sorted(p.relative_to(lab_site) for p in lab_site.rglob("*")) == before
        )
    finally:
        holder.kill()
        holder.wait()
    # the lock went with the process that held it: no stale lock after a kill
    with sitelock.hold(lab_site):
        pass
