"""Every shipped phase playbook parses against a rendered site (ansible-playbook --syntax-check)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hzcloud.model import load_site
from hzcloud.plan import plan_site
from hzcloud.render import render
from hzcloud.resources import resource

PLAYBOOKS = sorted(resource("playbooks").glob("*.yml"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    shutil.copy(resource("inventories") / "lab" / "site.yaml", site / "site.yaml")
    loaded = load_site(site)
    return render(loaded, plan_site(loaded), site).state_dir


def test_there_are_phase_playbooks() -> None:
    names = {p.stem for p in PLAYBOOKS}
    assert {"site", "base", "data"} <= names, names


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_playbook_syntax(playbook: Path, rendered: Path) -> None:
    env = {**os.environ, "ANSIBLE_CONFIG": str(rendered / "ansible.cfg")}
    exe = Path(sys.executable).parent / "ansible-playbook"
    res = subprocess.run(
        [str(exe), "--syntax-check", str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
