"""Shared fixtures of the unit tests: the example sites and the CLI."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hzcloud.app import app

ROOT = Path(__file__).resolve().parents[2]
LAB_SITE = ROOT / "inventories" / "lab" / "site.yaml"
SAMPLE_SITE = ROOT / "inventories" / "sample-hospital" / "site.yaml"

Hz = Callable[..., Result]


@pytest.fixture
def hz() -> Hz:
    """Run `hzcloud ARGS...` in-process; stdout and stderr are kept apart."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input)

    return invoke


def pick_services(site_dir: Path, names: list[str]) -> None:
    """Make the site's bundle.services these names (the lab site picks all five)."""
    site_yaml = site_dir / "site.yaml"
    text = re.sub(r"^bundle:\n(?:[ #].*\n|\n)*", "", site_yaml.read_text(), flags=re.M)
    site_yaml.write_text(f"{text}bundle:\n  services: [{', '.join(names)}]\n")


def copy_site(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(source, folder / "site.yaml")
    return folder


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    """A site folder holding a copy of the lab's site.yaml."""
    return copy_site(LAB_SITE, tmp_path / "lab")


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A site folder holding a copy of the sample hospital's site.yaml."""
    return copy_site(SAMPLE_SITE, tmp_path / "stgeorge")


@pytest.fixture
def read_only_site() -> Iterator[Path]:
    """A site folder (valid site.yaml, no secrets yet) that the command's user cannot write."""
    top = Path(tempfile.mkdtemp(prefix="hz-ro-"))  # not under pytest's 0700 folder: nobody reads it
    try:
        top.chmod(0o755)
        folder = top / "site"
        folder.mkdir()
        shutil.copy(LAB_SITE, folder / "site.yaml")
        (folder / "site.yaml").chmod(0o644)
        folder.chmod(0o555)
        yield folder
    finally:
        (top / "site").chmod(0o755)
        shutil.rmtree(top)


# A site whose servers refuse SSH (loopback, port 1): an operation against it fails (exit 1)
# without any host being touched.
REFUSING_SITE = """\
hospital: {name: Refusing, code: rf}
ssh: {port: 1, key: keys/none}
servers:
  - {name: rf-01, address: 127.0.0.21, disks: [/dev/vdb]}
  - {name: rf-02, address: 127.0.0.22, disks: [/dev/vdb]}
  - {name: rf-03, address: 127.0.0.23, disks: [/dev/vdb]}
networks: {management: 127.0.0.0/24}
services: {kubernetes: {enabled: false}}
bundle: {services: []}
"""
