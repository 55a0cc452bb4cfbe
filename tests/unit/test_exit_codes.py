"""Every command: 2 for bad input (and nothing written), 1 for an operation that failed.

The failed operations run for real against servers that refuse connections (127.0.0.x, port 1):
no lab is needed to see SSH fail. Commands that only read (validate, plan, status) have no
operation that can fail on its own; their bad input is here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import REFUSING_SITE
from test_hostile import snapshot

from hzcloud.model import load_site
from hzcloud.plan import plan_site

if TYPE_CHECKING:
    from conftest import Hz

ROOT = Path(__file__).resolve().parents[2]
LAB_SITE = ROOT / "inventories" / "lab" / "site.yaml"


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    folder = tmp_path / "lab"
    folder.mkdir()
    shutil.copy(LAB_SITE, folder / "site.yaml")
    return folder


@pytest.fixture
def refusing(tmp_path: Path) -> Path:
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client")
    folder = tmp_path / "rf"
    folder.mkdir()
    (folder / "site.yaml").write_text(REFUSING_SITE)
    return folder


def bad_input(hz: Hz, folder: Path, args: list[str], stderr: str) -> None:
    before = snapshot(folder.parent)
    result = hz(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr == stderr
    assert "Traceback" not in result.output
    assert snapshot(folder.parent) == before


def missing_site(path: Path) -> str:
    return (
        "error: 1 problem in the site files; nothing was changed\n"
        f"  • {path} file not found\n"
        "      fix: give a site folder holding site.yaml, or create one with `hzcloud init`\n"
    )


@pytest.mark.parametrize("command", ["validate", "plan", "render", "status", "verify", "up"])
def test_a_missing_site_is_bad_input(hz: Hz, tmp_path: Path, command: str) -> None:
    bad_input(hz, tmp_path / "x", [command, str(tmp_path / "x")], missing_site(tmp_path / "x"))


def test_plan_with_an_unknown_output_is_bad_input(hz: Hz, lab: Path) -> None:
    result = hz("plan", str(lab), "-o", "yaml")
    assert (result.exit_code, result.stdout) == (2, "")
    assert "'yaml'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
def test_up_with_an_unknown_phase_is_bad_input(hz: Hz, lab: Path, dry_run: list[str]) -> None:
    bad_input(
        hz,
        lab,
        ["up", str(lab), "--only", "nosuch", *dry_run],
        "error: unknown phase nosuch\n"
        "  cause: this site's plan has no such phase (a switched-off service has none)\n"
        f"  fix:   choose from: {', '.join(p.name for p in plan_site(load_site(lab)).phases)}\n",
    )


def test_up_with_a_phase_before_its_prerequisites_is_bad_input(hz: Hz, lab: Path) -> None:
    bad_input(
        hz,
        lab,
        ["up", str(lab), "--dry-run", "--only", "kubernetes"],
        "error: phase kubernetes needs base, which has not completed\n"
        "  cause: phases run in dependency order\n"
        "  fix:   run `hzcloud up --only base,kubernetes` or plain `hzcloud up`\n",
    )


def test_verify_with_a_junit_file_in_no_folder_is_bad_input(hz: Hz, lab: Path) -> None:
    target = lab.parent / "nowhere" / "verify.xml"
    bad_input(
        hz,
        lab,
        ["verify", str(lab), "--junit", str(target)],
        f"error: --junit {target}: the folder {target.parent} does not exist\n"
        "  cause: nothing was checked\n"
        "  fix:   give a file path in a writable folder\n",
    )


def test_init_over_an_existing_site_is_bad_input(hz: Hz, lab: Path) -> None:
    bad_input(
        hz,
        lab,
        ["init", str(lab), "--from", str(ROOT / "inventories" / "sample-hospital")],
        f"error: {lab / 'site.yaml'} already exists\n"
        "  cause: hzcloud init never overwrites a site\n"
        "  fix:   use another folder, or pass --force to replace it\n",
    )


def test_init_without_servers_is_bad_input(hz: Hz, tmp_path: Path) -> None:
    bad_input(
        hz,
        tmp_path / "x",
        ["init", str(tmp_path / "x"), "-y", "--name", "X"],
        "error: missing --server\n"
        "  cause: --non-interactive never asks\n"
        "  fix:   give --name and one --server NAME=ADDRESS[:DISK,...] per server, "
        "or --from site.yaml\n",
    )


def test_lab_commands_naming_no_lab_are_bad_input(hz: Hz, tmp_path: Path) -> None:
    for command in (["status"], ["down"], ["kill", "lab-01"], ["cut", "lab-01"], ["heal"]):
        nowhere = tmp_path / "nowhere"
        bad_input(
            hz,
            nowhere,
            ["lab", *command, "--site", str(nowhere)],
            f"error: no lab at {nowhere}\n"
            f"  cause: {nowhere / 'site.yaml'} does not exist\n"
            f"  fix:   hzcloud lab up --site {nowhere}\n",
        )


def test_lab_ssh_to_no_such_node_is_bad_input(hz: Hz, lab: Path) -> None:
    names = ", ".join(f"lab-0{i}" for i in range(1, 9))
    bad_input(
        hz,
        lab,
        ["lab", "ssh", "nosuch", "--site", str(lab), "--", "true"],
        f"error: no node named 'nosuch' in the lab\n  fix:   use one of: {names}\n",
    )


# Failed operations: exit 1, the cause in words, the journal says where to resume.


def test_up_that_cannot_reach_its_servers_fails_with_1(hz: Hz, refusing: Path) -> None:
    result = hz("up", str(refusing), "--only", "preflight")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith('error: preflight failed on rf-01 (task "ssh")\n')
    assert "  cause: cannot reach 127.0.0.21:1" in result.stderr
    assert f"resumes at preflight (journal: {refusing.resolve() / 'state'}" in result.stderr
    assert "Traceback" not in result.output


def test_up_json_that_fails_says_so_and_exits_1(hz: Hz, refusing: Path) -> None:
    result = hz("up", str(refusing), "--only", "preflight", "-o", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert [(p["name"], p["status"]) for p in doc["phases"]] == [("preflight", "failed")]


def test_init_then_up_that_fails_exits_1_and_keeps_the_site(hz: Hz, tmp_path: Path) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client")
    source = tmp_path / "source.yaml"
    source.write_text(REFUSING_SITE)
    folder = tmp_path / "new"
    result = hz("init", str(folder), "--from", str(source), "--up", "--only", "preflight")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith('error: preflight failed on rf-01 (task "ssh")\n')
    assert (folder / "site.yaml").read_text() == REFUSING_SITE


def test_verify_that_cannot_reach_its_servers_fails_with_1(hz: Hz, refusing: Path) -> None:
    result = hz("verify", str(refusing))
    assert result.exit_code == 1
    assert result.stdout.endswith("3 checks, 3 failed\n")
    assert "Traceback" not in result.output


def test_status_after_a_failed_up_reports_it_and_exits_0(hz: Hz, refusing: Path) -> None:
    assert hz("up", str(refusing), "--only", "preflight").exit_code == 1
    result = hz("status", str(refusing), "-o", "json")
    assert result.exit_code == 0
    [phase] = json.loads(result.stdout)["phases"]
    assert (phase["name"], phase["status"]) == ("preflight", "failed")


def test_up_whose_verify_fails_exits_1_with_expected_and_seen(hz: Hz, refusing: Path) -> None:
    result = hz("up", str(refusing), "--only", "verify")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        'error: verify failed on rf-01 (task "reachable")\n'
        "  cause: expected answers over SSH, seen exit 255: ssh: connect to host 127.0.0.21 "
        "port 1: Connection refused\n"
    )


# The tenant's commands and the bundle's cluster commands: the same refusing servers.

TENANT = """\
cloud:
  tenants:
    - name: dr
      provider: s3-compatible
      region: r1
      api: https://127.0.0.40:1
      endpoint: 198.51.100.20
      subnet: 172.31.0.0/16
      credentials: tenant_dr
"""


@pytest.fixture
def refusing_tenant(hz: Hz, refusing: Path) -> Path:
    """A rendered site with a tenant whose servers refuse SSH (nothing reaches the tenant:
    backups and drills run on the servers)."""
    with (refusing / "site.yaml").open("a") as f:
        f.write(TENANT)
    assert hz("render", str(refusing)).exit_code == 0
    return refusing


def test_backup_now_that_reaches_no_server_fails_with_1(hz: Hz, refusing_tenant: Path) -> None:
    result = hz("backup", str(refusing_tenant), "--now", "-o", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    postgres = next(x for x in doc["layers"] if x["name"] == "postgres")
    assert postgres["error"].startswith("no PostgreSQL leader answered: rf-01: ")
    assert "127.0.0.21 port 1: Connection refused" in postgres["error"]
    assert "Traceback" not in result.output


def test_a_restore_drill_that_reaches_no_server_fails_with_1(hz: Hz, refusing_tenant: Path) -> None:
    result = hz("restore", str(refusing_tenant), "--drill", "-o", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["passed"] is False
    assert {x["name"] for x in doc["layers"]} >= {"postgres", "etcd-patroni"}
    assert not any(x["passed"] for x in doc["layers"])


def _imaging_on_refusing(folder: Path) -> None:
    text = (folder / "site.yaml").read_text()
    text = text.replace("services: {kubernetes: {enabled: false}}\n", "")
    text = text.replace("bundle: {services: []}", "bundle: {services: [imaging]}")
    text = text.replace(
        "management: 127.0.0.0/24}", "management: 127.0.0.0/24, kubernetes_vip: 127.0.0.30}"
    )
    (folder / "site.yaml").write_text(text)


def test_bundle_verify_against_refusing_nodes_fails_with_1(hz: Hz, refusing: Path) -> None:
    _imaging_on_refusing(refusing)
    result = hz("bundle", "verify", str(refusing), "-o", "json")
    assert result.exit_code == 1, result.output
    checks = json.loads(result.stdout)["checks"]
    assert checks and not any(c["passed"] for c in checks)
    assert {c["host"] for c in checks} == {"rf-01", "rf-02", "rf-03"}


def test_bundle_status_without_its_tool_or_cluster_says_why(hz: Hz, refusing: Path) -> None:
    _imaging_on_refusing(refusing)
    result = hz("bundle", "status", str(refusing))  # a site whose cluster was never deployed
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        f"error: cannot ask the cluster: {refusing / 'kubeconfig'} is missing\n"
    )
    assert "Traceback" not in result.output
    (refusing / "kubeconfig").write_text("")  # deployed, but its artifacts folder is gone
    kubectl = refusing / "artifacts" / "bin" / "kubectl"
    bad_input(
        hz,
        refusing,
        ["bundle", "status", str(refusing)],
        f"error: {kubectl} is missing (the status asks the cluster with it)\n"
        "  cause: nothing was asked\n"
        f"  fix:   build the artifacts with `scripts/build-artifacts {kubectl.parent.parent}`, "
        "or set `artifacts:` in site.yaml\n",
    )
