"""fleet.yaml: the example's plan, every problem with its place and fix, waves, status, JUnit."""

from __future__ import annotations

import json
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hzcloud import fleet, journal
from hzcloud.errors import SiteError

if TYPE_CHECKING:
    from conftest import Hz

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "lab-fleet"


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """A copy of the example fleet, free to edit."""
    folder = tmp_path / "lab-fleet"
    shutil.copytree(EXAMPLE, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def problems(folder: Path) -> list[str]:
    with pytest.raises(SiteError) as info:
        fleet.load_fleet(folder)
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def test_plan_of_the_example_fleet(hz: Hz) -> None:
    result = hz("fleet", "plan", str(EXAMPLE), "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "sites": [
            {"site": "fla", "wave": 1},
            {"site": "flb", "wave": 2},
            {"site": "flc", "wave": 2},
        ],
        "waves": [
            {"wave": 1, "sites": ["fla"], "phases": ["preflight", "base"]},
            {"wave": 2, "sites": ["flb", "flc"], "phases": ["preflight", "base"]},
        ],
    }


def test_the_example_sites_are_three_distinct_lab_hospitals() -> None:
    the_fleet = fleet.load_fleet(EXAMPLE / "fleet.yaml")
    assert [s.code for s in the_fleet.sites] == ["fla", "flb", "flc"]
    assert [s.path for s in the_fleet.sites] == [EXAMPLE / n for n in ("fla", "flb", "flc")]
    assert (the_fleet.max_failures, the_fleet.parallel) == (0, 2)
    assert all(
        s.plan_phases == ("preflight", "base", "storage", "data", "verify") for s in the_fleet.sites
    )


def test_unknown_key_with_its_line(fleet_dir: Path) -> None:
    edit(fleet_dir / "fleet.yaml", "  max_failures: 0", "  max_failure: 0")
    assert problems(fleet_dir) == [
        "fleet.yaml:26 policy.max_failure: unknown key "
        "(fix: remove it, or check its spelling against inventories/lab-fleet/fleet.yaml)"
    ]


def test_a_wave_is_one_kind(fleet_dir: Path) -> None:
    edit(fleet_dir / "fleet.yaml", "    - canary: 1 ", "    - {canary: 1, batch: 1}")
    assert problems(fleet_dir) == [
        "fleet.yaml:24 policy.waves[0]: give exactly one of canary: N, batch: N or sites: [...] "
        "(fix: see the policy in inventories/lab-fleet/fleet.yaml)"
    ]


def test_every_cross_field_problem_at_once(fleet_dir: Path) -> None:
    edit(
        fleet_dir / "fleet.yaml",
        "    - batch: 2 ",
        "    - sites: [flx, fla]\n    - batch: 1\n    - canary: 1 #",
    )
    edit(fleet_dir / "fleet.yaml", "phases: [preflight, base]", "phases: [preflight, kubernetes]")
    edit(fleet_dir / "fleet.yaml", "  - flc\n", "  - flc\n  - fla\n")
    edit(fleet_dir / "flb" / "site.yaml", "code: flb", "code: flc")
    assert problems(fleet_dir) == [
        "fleet.yaml:21 sites[3]: site fla is listed twice (fix: list it once)",
        "fleet.yaml:20 sites[2]: site flc has hospital.code flc, as flb has "
        "(fix: give every hospital of the fleet its own code)",
        "fleet.yaml:26 policy.waves[1].sites[0]: no site flx in sites: (fix: name one of: fla, flb, flc)",
        "fleet.yaml:26 policy.waves[1].sites[1]: site fla is already in an earlier wave "
        "(fix: put every site in one wave)",
        "fleet.yaml:27 policy.waves[2].batch: batch repeats until every site has a wave: it must be the last wave "
        "(fix: move it to the end, or write canary: N for a wave of N sites)",
        "fleet.yaml:31 policy.phases: phase kubernetes is not in the plan of site fla "
        "(fix: choose from: preflight, base, storage, data, verify (a switched-off service has no phase))",
    ]


def test_sites_left_out_of_the_waves(fleet_dir: Path) -> None:
    edit(fleet_dir / "fleet.yaml", "    - batch: 2 ", "    - sites: [flc] #")
    assert problems(fleet_dir) == [
        "fleet.yaml:23 policy.waves: site flb in no wave "
        "(fix: end the waves with batch: N, or name every site in sites: [...])"
    ]


def test_a_site_folder_without_site_yaml(fleet_dir: Path) -> None:
    (fleet_dir / "flb" / "site.yaml").unlink()
    assert problems(fleet_dir) == [
        f"fleet.yaml:19 sites[1]: {fleet_dir / 'flb' / 'site.yaml'} does not exist "
        "(fix: create it (hzcloud init flb), or give a template: and values:)"
    ]


def test_a_site_yaml_problem_names_the_site_file(fleet_dir: Path) -> None:
    edit(fleet_dir / "flc" / "site.yaml", "address: 10.85.0.12", "address: 10.86.0.12")
    assert problems(fleet_dir) == [
        "flc/site.yaml:13 servers[1].address: 10.86.0.12 is outside the management network "
        "10.85.0.0/24 (fix: pick an address between 10.85.0.1 and 10.85.0.254, "
        "or correct networks.management)"
    ]


def test_a_site_that_contradicts_a_shared_setting(fleet_dir: Path) -> None:
    edit(
        fleet_dir / "fleet.yaml",
        "  artifacts: artifacts\n",
        "  artifacts: /srv/artifacts\n  mirror: http://10.9.0.1:3142\n",
    )
    found = problems(fleet_dir)
    assert found[:2] == [
        "fla/site.yaml:19 networks.mirror: is http://10.83.0.1:3142/; fleet.yaml shared.mirror "
        "says http://10.9.0.1:3142/ (fix: write networks.mirror: http://10.9.0.1:3142/ into "
        "fla/site.yaml, or remove shared.mirror from fleet.yaml)",
        "fla/site.yaml artifacts: is artifacts; fleet.yaml shared.artifacts says /srv/artifacts "
        "(fix: write artifacts: /srv/artifacts into fla/site.yaml, or remove shared.artifacts "
        "from fleet.yaml)",
    ]
    assert len(found) == 6


def test_bad_input_exits_2_and_touches_nothing(fleet_dir: Path, hz: Hz) -> None:
    edit(fleet_dir / "fleet.yaml", "fleet: lab-fleet", "fleet: Lab Fleet")
    before = sorted(p.relative_to(fleet_dir) for p in fleet_dir.rglob("*"))
    for args in (("plan",), ("up",), ("status",)):
        result = hz("fleet", *args, str(fleet_dir))
        assert result.exit_code == 2, result.output
        assert "fleet.yaml:5 fleet: invalid value 'Lab Fleet'" in result.stderr
    assert sorted(p.relative_to(fleet_dir) for p in fleet_dir.rglob("*")) == before


def test_up_refuses_an_unknown_phase(fleet_dir: Path, hz: Hz) -> None:
    result = hz("fleet", "up", str(fleet_dir), "--only", "preflight,kubernetes")
    assert result.exit_code == 2
    assert "unknown phase kubernetes for site fla" in result.stderr
    assert not (fleet_dir / "state").exists()


TEMPLATE = """\
hospital: {name: Template Hospital, code: tpl}
servers:
  - {name: n-01, address: 10.90.0.11, disks: [/dev/sdb]}
  - {name: n-02, address: 10.90.0.12, disks: [/dev/sdb]}
  - {name: n-03, address: 10.90.0.13, disks: [/dev/sdb]}
networks:
  management: 10.90.0.0/24
bundle: {services: []}
services: {kubernetes: {enabled: true}}
"""

TEMPLATE_FLEET = """\
fleet: north
shared:
  mirror: http://10.90.0.1:3142
  services: {kubernetes: {enabled: false}}
sites:
  - folder: north-a
    template: template.yaml
    values:
      hospital: {name: North A, code: norta}
  - folder: north-b
    template: template.yaml
    values:
      hospital: {name: North B, code: nortb}
      servers:
        - {name: b-01, address: 10.91.0.11, disks: [/dev/sdb]}
        - {name: b-02, address: 10.91.0.12, disks: [/dev/sdb]}
        - {name: b-03, address: 10.91.0.13, disks: [/dev/sdb]}
policy:
  waves: [{sites: [north-b]}, {batch: 5}]
"""


def test_a_template_site_inherits_the_shared_settings(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "fleet.yaml").write_text(TEMPLATE_FLEET)
    assert problems(tmp_path) == [
        "fleet.yaml:15 sites[1].values.servers[0].address: 10.91.0.11 is outside the management "
        "network 10.90.0.0/24 (fix: pick an address between 10.90.0.1 and 10.90.0.254, or "
        "correct networks.management)",
        "fleet.yaml:16 sites[1].values.servers[1].address: 10.91.0.12 is outside the management "
        "network 10.90.0.0/24 (fix: pick an address between 10.90.0.1 and 10.90.0.254, or "
        "correct networks.management)",
        "fleet.yaml:17 sites[1].values.servers[2].address: 10.91.0.13 is outside the management "
        "network 10.90.0.0/24 (fix: pick an address between 10.90.0.1 and 10.90.0.254, or "
        "correct networks.management)",
    ]
    text = (tmp_path / "fleet.yaml").read_text()
    (tmp_path / "fleet.yaml").write_text(
        text.replace("      servers:", "      networks: {management: 10.91.0.0/24}\n      servers:")
    )
    the_fleet = fleet.load_fleet(tmp_path)
    assert the_fleet.to_dict()["sites"] == [
        {"site": "north-a", "wave": 2},
        {"site": "north-b", "wave": 1},
    ]
    assert fleet.write_generated(the_fleet) == [
        tmp_path / "north-a/site.yaml",
        tmp_path / "north-b/site.yaml",
    ]
    assert fleet.write_generated(the_fleet) == []  # written once, then up to date
    from hzcloud.model import load_site

    site = load_site(tmp_path / "north-b")
    assert site.hospital.code == "nortb"
    assert str(site.networks.mirror) == "http://10.90.0.1:3142/"
    assert not site.services.kubernetes.enabled
    assert [s.name for s in site.servers] == ["b-01", "b-02", "b-03"]


def _record(site: Path, phase: str, status: str, plan_hash: str, t: float) -> None:
    journal.append(
        site / "state",
        journal.PhaseRecord(
            "r1",
            phase,
            status,
            t,
            t + 1,
            2,
            1.0,
            {},
            {"host": "fla-01", "message": "boom"} if status == "failed" else {},
            plan_hash,
        ),
    )


def test_status_and_junit_come_from_each_site_journal(
    fleet_dir: Path, hz: Hz, tmp_path: Path
) -> None:
    the_fleet = fleet.load_fleet(fleet_dir)
    fla, flb, _ = the_fleet.sites
    now = time.time()
    _record(fla.path, "preflight", "ok", fla.plan_digest, now)
    _record(fla.path, "base", "ok", fla.plan_digest, now + 1)
    _record(flb.path, "preflight", "failed", flb.plan_digest, now)
    result = hz("fleet", "status", str(fleet_dir), "--output", "json")
    assert result.exit_code == 0, result.output
    sites = json.loads(result.stdout)["sites"]
    assert [(s["site"], s["wave"], s["status"]) for s in sites] == [
        ("fla", 1, "done"),
        ("flb", 2, "failed"),
        ("flc", 2, "pending"),
    ]
    for entry in sites:
        own = hz("status", str(fleet_dir / entry["site"]), "--output", "json")
        assert entry["phases"] == json.loads(own.stdout)["phases"]
    assert fleet.is_done(fla, ("preflight", "base"))
    assert not fleet.is_done(fla, ("preflight", "base", "storage"))
    # A changed site.yaml is a new plan: what was done for the old one does not count.
    edit(fleet_dir / "fla" / "site.yaml", "[/dev/vdb]}", "[/dev/vdc]}")
    assert not fleet.is_done(fleet.load_fleet(fleet_dir).sites[0], ("preflight", "base"))

    written = fleet.write_junit(the_fleet, tmp_path / "junit")
    assert [p.name for p in written] == ["fla.xml", "flb.xml", "flc.xml"]
    suites = [ET.parse(p).getroot() for p in written]
    assert [(s.get("tests"), s.get("failures"), s.get("skipped")) for s in suites] == [
        ("2", "0", "0"),
        ("2", "1", "1"),
        ("2", "0", "2"),
    ]
    failure = suites[1].find("testcase[@name='preflight']/failure")
    assert failure is not None and failure.get("message") == "fla-01 boom"


def test_a_failed_canary_holds_the_rest(fleet_dir: Path, hz: Hz) -> None:
    # `up --only base` before preflight has run fails at once, touching no host: a real
    # failure of the site's own `hzcloud up`, quick enough for a unit test.
    result = hz("fleet", "up", str(fleet_dir), "--only", "base", "--output", "json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert [(s["site"], s["status"]) for s in data["sites"]] == [
        ("fla", "failed"),
        ("flb", "held"),
        ("flc", "held"),
    ]
    assert data["stopped"] is True
    assert "phase base needs preflight" in data["sites"][0]["error"]
    assert "1 site(s) failed: fla at start" in result.stderr
    assert "not started: flb, flc" in result.stderr
    log = fleet_dir / "state" / "logs" / "fla.log"
    assert "--only base" in log.read_text()


def test_site_entries_and_policy_values(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(
        "fleet: x\n"
        "sites:\n"
        "  - {folder: a, tmpl: t.yaml}\n"
        "  - 3\n"
        "policy:\n"
        "  waves: [{canary: 0}]\n"
        "  parallel: many\n"
    )
    assert problems(tmp_path) == [
        "fleet.yaml:3 sites[0].tmpl: unknown key "
        "(fix: remove it, or check its spelling against inventories/lab-fleet/fleet.yaml)",
        "fleet.yaml:4 sites[1]: expected a site folder or a mapping with folder: (got 3) "
        "(fix: write `- FOLDER`, or `- {folder: FOLDER, template: FILE, values: {...}}`)",
        "fleet.yaml:6 policy.waves[0].canary: Input should be greater than or equal to 1 (got 0) "
        "(fix: raise the value)",
        "fleet.yaml:7 policy.parallel: Input should be a valid integer, unable to parse string "
        "as an integer (got 'many') (fix: write a whole number)",
    ]
