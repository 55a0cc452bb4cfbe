"""The lab fleet for real: three 3-server labs side by side, rolled out in waves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hzcloud import lab
from hzcloud.resources import resource

pytestmark = pytest.mark.lab

HZ = [sys.executable, "-m", "hzcloud"]
SITES = ("fla", "flb", "flc")
PHASES = os.environ.get("HZCLOUD_FLEET_PHASES", "preflight,base")


def hz(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HZ, *args], capture_output=True, text=True, timeout=timeout)


def fleet_up(fleet: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    res = hz("fleet", "up", str(fleet), "--only", PHASES, "--output", "json", *extra)
    try:
        data: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"fleet up gave no JSON (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res.returncode, data, res.stderr


def by_site(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["site"]: s for s in data["sites"]}


def set_policy(fleet: Path, **policy: Any) -> None:
    path = fleet / "fleet.yaml"
    data = yaml.safe_load(path.read_text())
    data["policy"].update(policy)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def set_disks(site: Path, disks: list[str]) -> None:
    path = site / "site.yaml"
    data = yaml.safe_load(path.read_text())
    for server in data["servers"]:
        server["disks"] = list(disks)  # one list each: a shared one is dumped as a YAML alias
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def journal_phases(site: Path) -> list[str]:
    journal = site / "state" / "journal.jsonl"
    if not journal.exists():
        return []
    return [json.loads(line)["phase"] for line in journal.read_text().splitlines()]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example fleet copied into a tmp folder, its three labs up; down at the end."""
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        if os.environ.get("CI"):  # CI has both: a skip there would hide a broken machine
            pytest.fail("the lab needs root and systemd-nspawn")
        pytest.skip("the lab needs root and systemd-nspawn")
    folder = tmp_path_factory.mktemp("fleet") / "lab-fleet"
    shutil.copytree(resource("inventories") / "lab-fleet", folder)
    # the policy's phases are the ones rolled out here: `fleet status` says "done" against them
    set_policy(folder, phases=PHASES.split(","))
    try:
        for name in SITES:
            lab.up(folder / name)
        yield folder
    finally:
        set_disks(folder / "fla", ["/dev/vdb"])  # `down` reads the site: leave it valid
        for name in SITES:
            if (folder / name / "state" / "lab").exists():
                lab.down(folder / name)


def test_three_labs_run_side_by_side_and_a_clash_is_refused(fleet: Path) -> None:
    for name in SITES:
        assert {n.state for n in lab.status(fleet / name).nodes} == {"running"}, name
    ours = [p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("hzfl")]
    assert len(ours) == 3, ours  # one management bridge per lab, none shared

    # A fourth site with fla's code and network, in another folder: refused before anything.
    twin = fleet.parent / "twin"
    twin.mkdir()
    text = (fleet / "fla" / "site.yaml").read_text().replace("fla-0", "twn-0")
    (twin / "site.yaml").write_text(text)
    res = hz("lab", "up", "--site", str(twin), timeout=120)
    assert res.returncode == 2, res.stderr
    assert str(twin) in res.stderr and str(fleet / "fla") in res.stderr, res.stderr
    assert "hospital.code 'fla'" in res.stderr and "10.83.0.0/24" in res.stderr, res.stderr
    assert "fix:" in res.stderr
    assert not (twin / "state" / "lab").exists()


def test_a_failed_canary_holds_the_second_wave(fleet: Path) -> None:
    set_disks(fleet / "fla", ["/dev/vdc"])  # the lab made /dev/vdb only: a missing disk
    set_policy(fleet, max_failures=0)
    rc, data, stderr = fleet_up(fleet)
    assert rc == 1, stderr
    sites = by_site(data)
    assert sites["fla"]["status"] == "failed"
    assert sites["fla"]["failed_phase"] == "preflight"
    assert "/dev/vdc" in sites["fla"]["error"]
    assert (sites["flb"]["status"], sites["flc"]["status"]) == ("held", "held")
    assert "fla at preflight" in stderr and "not started: flb, flc" in stderr, stderr
    assert journal_phases(fleet / "flb") == journal_phases(fleet / "flc") == []


def test_with_max_failures_1_the_others_complete(fleet: Path, tmp_path: Path) -> None:
    set_policy(fleet, max_failures=1)
    rc, data, stderr = fleet_up(fleet, "--junit-dir", str(tmp_path))
    assert rc == 1, stderr
    sites = by_site(data)
    assert sites["fla"]["status"] == "failed" and sites["fla"]["failed_phase"] == "preflight"
    assert sites["flb"]["status"] == sites["flc"]["status"] == "ok", data
    junit = {p.stem: ET.parse(p).getroot() for p in tmp_path.glob("*.xml")}
    assert sorted(junit) == list(SITES)
    assert [c.get("name") for c in junit["flb"]] == PHASES.split(",")
    assert junit["flb"].get("failures") == "0"
    assert junit["fla"].get("failures") == "1"
    assert junit["fla"].find("testcase/failure") is not None


def test_after_the_fix_only_what_is_left_runs(fleet: Path) -> None:
    set_disks(fleet / "fla", ["/dev/vdb"])
    before = {name: len(journal_phases(fleet / name)) for name in ("flb", "flc")}
    rc, data, stderr = fleet_up(fleet)
    assert rc == 0, stderr
    sites = by_site(data)
    assert [sites[n]["status"] for n in SITES] == ["ok", "done", "done"], data
    assert {name: len(journal_phases(fleet / name)) for name in ("flb", "flc")} == before

    res = hz("fleet", "status", str(fleet), "--output", "json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)["sites"]
    assert [(s["site"], s["wave"], s["status"]) for s in status] == [
        ("fla", 1, "done"),
        ("flb", 2, "done"),
        ("flc", 2, "done"),
    ]
    for entry in status:
        own = hz("status", str(fleet / entry["site"]), "--output", "json")
        assert entry["phases"] == json.loads(own.stdout)["phases"]

    rc, data, _ = fleet_up(fleet)  # everything done: nothing runs again
    assert rc == 0 and {s["status"] for s in data["sites"]} == {"done"}


def test_down_of_one_lab_leaves_the_others_running(fleet: Path) -> None:
    lab.down(fleet / "flc")
    assert {n.state for n in lab.status(fleet / "flc").nodes} == {"stopped"}
    for name in ("fla", "flb"):
        assert {n.state for n in lab.status(fleet / name).nodes} == {"running"}, name
        res = subprocess.run(
            [*lab.ssh_argv(fleet / name, f"{name}-01"), "hostname"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert res.stdout.strip() == f"{name}-01", res.stderr
