"""The shipped playbooks against a rendered site: they parse, site.yml runs every phase in
order, the ceph role is one play per inventory group, and a service the site turns off is
skipped without contacting a server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hzcloud.model import load_site
from hzcloud.phases import REGISTRY
from hzcloud.plan import plan_site
from hzcloud.render import render
from hzcloud.resources import resource

PLAYBOOKS = sorted(resource("playbooks").glob("*.yml"))
# bundle.yml is not a phase of site.yml: the bundle phase runs it with the needs as extra vars;
# bundle-purge.yml is `hzcloud bundle remove --purge`'s, with the same extra vars
PHASE_PLAYBOOKS = {p.stem: p for p in PLAYBOOKS if p.stem not in ("site", "bundle", "bundle-purge")}
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
CEPH_GROUPS = {"ceph_mon", "ceph_mgr", "ceph_osd", "ceph_rgw"}


def _load(path: Path) -> list[dict[str, Any]]:
    plays = yaml.safe_load(path.read_text())
    assert isinstance(plays, list), path
    return plays


def _groups(pattern: str) -> set[str]:
    """The groups of a host pattern such as `ceph_mgr:ceph_rgw` or `ceph_mon[0]`."""
    return {part.split("[", 1)[0] for part in pattern.split(":")}


def _run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_CONFIG": str(state / "ansible.cfg"), "NO_COLOR": "1"}
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(state / "inventory.yml"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    shutil.copy(resource("inventories") / "lab" / "site.yaml", site / "site.yaml")
    loaded = load_site(site)
    return render(loaded, plan_site(loaded), site).state_dir


@pytest.fixture(scope="module")
def all_off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's servers on TEST-NET-1 (nothing answers there) with every service turned off."""
    site = tmp_path_factory.mktemp("off")
    spec = yaml.safe_load((resource("inventories") / "lab" / "site.yaml").read_text())
    for i, server in enumerate(spec["servers"]):
        server["address"] = f"192.0.2.{11 + i}"
    spec["networks"] = {"management": "192.0.2.0/24"}
    spec["services"] = {
        name: {"enabled": False} for name in ("ceph", "postgres", "redis", "kubernetes")
    }
    spec["cloud"] = {"tenants": []}
    spec["bundle"] = {"services": []}
    (site / "site.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    loaded = load_site(site)
    return render(loaded, plan_site(loaded), site).state_dir


def test_there_are_phase_playbooks() -> None:
    assert {"base", "storage", "data", "kubernetes"} <= set(PHASE_PLAYBOOKS), PHASE_PLAYBOOKS


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_playbook_syntax(playbook: Path, rendered: Path) -> None:
    res = _run(rendered, "--syntax-check", str(playbook))
    assert res.returncode == 0, res.stdout + res.stderr


def test_site_imports_every_ansible_phase_of_the_registry_in_order() -> None:
    imported = [
        play["ansible.builtin.import_playbook"]
        for play in _load(resource("playbooks") / "site.yml")
    ]
    ansible = [p for p in REGISTRY if p.executor == "ansible"]
    # every Ansible phase, once, after the Ansible phases it depends on
    assert sorted(imported) == sorted(f"{p.playbook or p.name}.yml" for p in ansible)
    # a Pulumi phase's playbook (cloud: the link after the stack) needs the stack's outputs
    after_stack = {p.playbook for p in REGISTRY if p.executor == "pulumi" and p.playbook}
    assert sorted(imported) == sorted(
        f"{name}.yml" for name in PHASE_PLAYBOOKS if name not in after_stack
    )
    order = [name.removesuffix(".yml") for name in imported]
    for p in ansible:
        for before in p.depends_on:
            if before in order:
                assert order.index(before) < order.index(p.playbook or p.name), (before, p.name)


def test_storage_is_one_play_per_ceph_group(rendered: Path) -> None:
    inventory = yaml.safe_load((rendered / "inventory.yml").read_text())
    rendered_groups = set(inventory["all"]["children"])
    plays = _load(resource("playbooks") / "storage.yml")
    covered: set[str] = set()
    tasks_dir = resource("playbooks") / "roles" / "ceph" / "tasks"
    for play in plays:
        groups = _groups(play["hosts"])
        assert groups <= rendered_groups, (play["name"], groups - rendered_groups)
        covered |= groups
        includes = [t["ansible.builtin.include_role"] for t in play["tasks"]]
        assert includes and all(i["name"] == "ceph" for i in includes), play["name"]
        for include in includes:
            assert (tasks_dir / include["tasks_from"]).is_file(), include
    assert covered == CEPH_GROUPS
    # the plays, not per-task guards, choose the servers
    guarded = [
        p.name for p in tasks_dir.glob("*.yml") if "inventory_hostname in groups" in p.read_text()
    ]
    assert guarded == []


@pytest.mark.parametrize("phase", ["storage", "data", "kubernetes"])
def test_a_phase_that_is_off_skips_without_contacting_a_server(phase: str, all_off: Path) -> None:
    # nothing answers on 192.0.2.0/24: any play that reached a server would fail as unreachable
    res = _run(all_off, str(PHASE_PLAYBOOKS[phase]))
    assert res.returncode == 0, res.stdout + res.stderr
    recap = res.stdout.split("PLAY RECAP", 1)[1]
    assert not re.search(r"^lab-\d+ +:", recap, re.MULTILINE), recap
