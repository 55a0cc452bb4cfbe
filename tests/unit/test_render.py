"""The renderer: a valid Ansible inventory, idempotent output, and secrets kept out of it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from hzcloud.model import Role, load_site
from hzcloud.plan import plan_site
from hzcloud.render import Rendered, group_name, render
from hzcloud.resources import resource
from hzcloud.secrets import GENERATED, read_secrets

if TYPE_CHECKING:
    from conftest import Hz

ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")


def render_site(site_dir: Path) -> Rendered:
    site = load_site(site_dir)
    return render(site, plan_site(site), site_dir)


def ansible_inventory(site_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_CONFIG": str(site_dir / "state" / "ansible.cfg"), "NO_COLOR": "1"}
    done = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", "state/inventory.yml", *args],
        cwd=site_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return done.stdout


def graph(text: str) -> dict[str, set[str]]:
    """`ansible-inventory --graph` as {group: hosts}."""
    groups: dict[str, set[str]] = {}
    current = ""
    for line in text.splitlines():
        name = line.strip(" |-")
        if name.startswith("@"):
            current = name[1:].rstrip(":")
            groups[current] = set()
        elif name:
            groups[current].add(name)
    return groups


def files_under(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {
        p: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


MINIMAL = """\
hospital: {name: "Small Clinic: East", code: east}
ssh: {user: hzadmin, key: /root/.ssh/id_ed25519}
servers:
  - {name: e-1, address: 192.168.5.10}
  - {name: e-2, address: 192.168.5.11}
  - {name: e-3, address: 192.168.5.12}
networks: {management: 192.168.5.0/24}
services:
  ceph: {enabled: false}
  redis: {enabled: false}
bundle: {services: []}
"""


@pytest.fixture
def minimal_dir(tmp_path: Path) -> Path:
    """Three servers, no Ceph, no Redis, no tenant: several groups stay empty."""
    site_dir = tmp_path / "east"
    site_dir.mkdir()
    (site_dir / "site.yaml").write_text(MINIMAL)
    return site_dir


@pytest.mark.skipif(not ANSIBLE_INVENTORY.exists(), reason="ansible-inventory not in the venv")
@pytest.mark.parametrize("fixture", ["lab_dir", "sample_dir", "minimal_dir"])
def test_ansible_reads_every_group_and_host(fixture: str, request: pytest.FixtureRequest) -> None:
    site_dir: Path = request.getfixturevalue(fixture)
    render_site(site_dir)
    plan = plan_site(load_site(site_dir))
    groups = graph(ansible_inventory(site_dir, "--graph"))
    for role in Role:
        assert groups[group_name(role)] == {n.name for n in plan.hosts(role)}, role
    assert groups["ungrouped"] == set()
    assert set(groups) == {"all", "ungrouped"} | {group_name(r) for r in Role}


@pytest.mark.skipif(not ANSIBLE_INVENTORY.exists(), reason="ansible-inventory not in the venv")
def test_host_vars_and_linked_secrets_reach_ansible(lab_dir: Path) -> None:
    render_site(lab_dir)
    hostvars = json.loads(ansible_inventory(lab_dir, "--list"))["_meta"]["hostvars"]
    secrets = read_secrets(lab_dir)
    lab3 = hostvars["lab-03"]
    assert lab3["ansible_host"] == "10.77.0.13"
    assert lab3["hz_disks"] == ["/dev/vdb"]
    assert "ceph-mon" in lab3["hz_roles"]
    assert lab3["ansible_ssh_private_key_file"] == str(lab_dir.resolve() / "keys/id_ed25519")
    assert lab3["ceph_replicas"] == 3
    assert lab3["hz_apt_proxy"] == "http://10.77.0.1:3142"
    assert lab3["redis_password"] == secrets["redis_password"]


def test_a_second_render_writes_nothing(lab_dir: Path) -> None:
    first = render_site(lab_dir)
    assert first.written
    before = files_under(lab_dir)
    again = render_site(lab_dir)
    assert again.written == ()
    assert set(again.unchanged) == set(first.written)
    assert files_under(lab_dir) == before


def test_a_change_rewrites_only_the_files_it_touches(lab_dir: Path) -> None:
    render_site(lab_dir)
    site_yaml = lab_dir / "site.yaml"
    site_yaml.write_text(site_yaml.read_text().replace("10.77.0.1:3142", "10.77.0.2:3142"))
    result = render_site(lab_dir)
    assert [p.relative_to(result.state_dir).as_posix() for p in result.written] == [
        "group_vars/all/network.yml"
    ]


def test_secrets_are_private_linked_and_stable(lab_dir: Path) -> None:
    result = render_site(lab_dir)
    secrets_file = lab_dir / "secrets.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    link = result.state_dir / "group_vars" / "all" / "secrets.yml"
    assert link.is_symlink()
    assert link.resolve() == secrets_file.resolve()
    values = read_secrets(lab_dir)
    assert set(values) == set(GENERATED)
    assert len(set(values.values())) == len(GENERATED)
    render_site(lab_dir)
    assert read_secrets(lab_dir) == values


def test_no_secret_appears_in_any_rendered_file_or_output(lab_dir: Path, hz: Hz) -> None:
    result = hz("render", str(lab_dir))
    assert result.exit_code == 0, result.output
    secrets = read_secrets(lab_dir).values()
    rendered = files_under(lab_dir / "state")
    assert rendered
    for path, (content, _) in rendered.items():
        for value in secrets:
            assert value.encode() not in content, path
    for command in (["render"], ["plan"], ["plan", "-o", "json"], ["validate"]):
        out = hz(*command, str(lab_dir))
        assert out.exit_code == 0
        assert not any(value in out.output for value in secrets), command


def test_render_reports_what_it_wrote(lab_dir: Path, hz: Hz) -> None:
    first = hz("render", str(lab_dir))
    again = hz("render", str(lab_dir))
    state = (lab_dir / "state").resolve()
    written = len(list((resource("templates") / "state").rglob("*.j2")))
    assert first.stdout == f"rendered {state}: {written} written, 0 unchanged\n"
    assert again.stdout == f"rendered {state}: 0 written, {written} unchanged\n"


def test_the_inventory_is_plain_yaml_of_the_plan(lab_dir: Path) -> None:
    result = render_site(lab_dir)
    inventory = yaml.safe_load(result.inventory.read_text())
    plan = plan_site(load_site(lab_dir))
    assert list(inventory["all"]["hosts"]) == [n.name for n in plan.nodes]
    assert inventory["all"]["vars"]["ansible_user"] == "root"
    assert "ansible_become" not in inventory["all"]["vars"]


def test_a_site_without_storage_renders_empty_groups_and_become(minimal_dir: Path) -> None:
    result = render_site(minimal_dir)
    inventory = yaml.safe_load(result.inventory.read_text())
    groups = inventory["all"]["children"]
    assert groups["ceph_osd"] == {"hosts": {}}
    assert groups["redis"] == {"hosts": {}}
    assert set(groups["postgres"]["hosts"]) == {"e-1", "e-2", "e-3"}
    assert inventory["all"]["vars"]["ansible_become"] is True
    site_vars = yaml.safe_load((result.state_dir / "group_vars/all/site.yml").read_text())
    assert site_vars["hz_hospital_name"] == "Small Clinic: East"
