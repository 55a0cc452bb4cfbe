"""The command line through CliRunner: exit codes, output, and `init` by flags, file or wizard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_hostile import snapshot
from typer.testing import CliRunner

from hzcloud import __version__
from hzcloud.app import app
from hzcloud.model import load_site
from hzcloud.plan import plan_site

if TYPE_CHECKING:
    from conftest import Hz

ROOT = Path(__file__).resolve().parents[2]
LAB_SITE = ROOT / "inventories" / "lab" / "site.yaml"
SAMPLE_SITE = ROOT / "inventories" / "sample-hospital" / "site.yaml"


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"hzcloud {__version__}\n"


def test_short_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["-h"])
    assert result.exit_code == 0
    for command in ("validate", "plan", "render", "init"):
        assert command in result.stdout


def test_help_imports_no_engine_model_printer_or_group() -> None:
    # the start of every command stays cheap: what `--help` needs is typer and the command table
    code = (
        "import sys; from hzcloud.app import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('hzcloud.engine', 'hzcloud.model', 'hzcloud.report', 'hzcloud.commands.lab',"
        " 'hzcloud.commands.fleet', 'hzcloud.commands.bundle', 'hzcloud.commands.backup',"
        " 'paramiko', 'ansible_runner', 'pulumi', 'jinja2', 'cryptography')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stderr.strip() == "[]"
    for group in ("lab", "fleet", "bundle", "backup", "restore"):
        assert group in out.stdout


@pytest.mark.parametrize(
    ("group", "offers"),
    [
        ("lab", ("up", "down", "status", "ssh")),
        ("fleet", ("plan", "render", "up", "status")),
        ("bundle", ("list", "install", "upgrade", "remove")),
        ("backup", ("run", "status")),
        ("restore", ("--drill", "--to")),
    ],
)
def test_lazy_groups_load_when_asked(hz: Hz, group: str, offers: tuple[str, ...]) -> None:
    result = hz(group, "--help")
    assert result.exit_code == 0, result.output
    for offered in offers:
        assert offered in result.stdout


def test_command_help(hz: Hz) -> None:
    result = hz("init", "-h")
    assert result.exit_code == 0
    assert "--non-interactive" in result.stdout
    assert "--server" in result.stdout


def test_usage_errors_exit_2_without_a_traceback(hz: Hz, lab_dir: Path) -> None:
    for args in (["frobnicate"], ["plan", str(lab_dir), "-o", "yaml"], ["validate", "--nope"]):
        result = hz(*args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output


def test_validate_ok(hz: Hz, lab_dir: Path) -> None:
    result = hz("validate", str(lab_dir))
    assert result.exit_code == 0
    assert result.stdout == f"{lab_dir / 'site.yaml'}: ok — Lab General Hospital, 8 servers\n"
    assert result.stderr == ""


def test_validate_bad(hz: Hz, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(LAB_SITE.read_text().replace("min_size: 2", "min_size: 4"))
    result = hz("validate", str(tmp_path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: 1 problem in the site files; nothing was changed\n"
        "  • site.yaml:34 services.ceph.min_size: min_size 4 is larger than replicas 3\n"
        "      fix: set min_size to at most replicas (usually replicas - 1)\n"
    )


def test_validate_defaults_to_the_current_folder(
    hz: Hz, lab_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(lab_dir)
    result = hz("validate")
    assert result.exit_code == 0
    assert "ok — Lab General Hospital" in result.stdout


def test_plan_text(hz: Hz, lab_dir: Path) -> None:
    result = hz("plan", str(lab_dir))
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("Lab General Hospital (lab) — 8 servers\n")
    for name in (f"lab-0{i}" for i in range(1, 9)):
        assert name in out
    assert (
        "  platform    pulumi    hzcloud's own workloads on the cluster (the echo canary), "
        "through Pulumi (after kubernetes)\n" in out
    )
    assert out.index("preflight") < out.index("verify")


def test_plan_json_matches_the_contract(hz: Hz, lab_dir: Path) -> None:
    result = hz("plan", str(lab_dir), "--output", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc == plan_site(load_site(lab_dir)).to_dict()
    assert doc["site"] == "lab"
    assert [n["name"] for n in doc["nodes"]] == [f"lab-0{i}" for i in range(1, 9)]
    assert all({"name", "address", "roles"} <= set(n) for n in doc["nodes"])
    assert all({"name", "depends_on"} <= set(p) for p in doc["phases"])
    assert hz("plan", str(lab_dir), "-o", "json").stdout == result.stdout


# init by flags

THREE = ["--server", "sg-01=10.20.0.11:/dev/sdb", "--server", "sg-02=10.20.0.12:/dev/sdb"]
THREE += ["--server", "sg-03=10.20.0.13:/dev/sdb,/dev/sdc"]


def test_init_non_interactive_then_plan(hz: Hz, tmp_path: Path) -> None:
    folder = tmp_path / "stgeorge"
    result = hz("init", str(folder), "--non-interactive", "--name", "St George's", *THREE)
    assert result.exit_code == 0, result.output
    assert f"wrote {folder / 'site.yaml'}" in result.stdout
    site = load_site(folder)
    assert (site.hospital.name, site.hospital.code) == ("St George's", "st-george-s")
    assert [s.name for s in site.servers] == ["sg-01", "sg-02", "sg-03"]
    assert site.servers[2].disks == ["/dev/sdb", "/dev/sdc"]
    assert str(site.networks.management) == "10.20.0.0/24"
    assert str(site.networks.postgres_vip) == "10.20.0.249"
    assert str(site.networks.kubernetes_vip) == "10.20.0.250"
    assert site.networks.mirror is None
    planned = hz("plan", str(folder), "-o", "json")
    assert planned.exit_code == 0
    assert [n["name"] for n in json.loads(planned.stdout)["nodes"]] == ["sg-01", "sg-02", "sg-03"]


def test_init_non_interactive_takes_every_flag(hz: Hz, tmp_path: Path) -> None:
    folder = tmp_path / "x"
    result = hz(
        "init", str(folder), "-y", "--name", "X", "--code", "xh", *THREE,
        "--ssh-user", "hzadmin", "--ssh-key", "keys/id", "--management", "10.20.0.0/23",
        "--postgres-vip", "10.20.1.10", "--kubernetes-vip", "10.20.1.11",
        "--mirror", "http://10.20.0.5:3142",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    site = load_site(folder)
    assert site.hospital.code == "xh"
    assert (site.ssh.user, site.ssh.key) == ("hzadmin", "keys/id")
    assert str(site.networks.management) == "10.20.0.0/23"
    assert (str(site.networks.postgres_vip), str(site.networks.kubernetes_vip)) == (
        "10.20.1.10",
        "10.20.1.11",
    )
    assert str(site.networks.mirror) == "http://10.20.0.5:3142/"


def test_init_non_interactive_without_servers_fails_and_writes_nothing(
    hz: Hz, tmp_path: Path
) -> None:
    result = hz("init", str(tmp_path / "x"), "-y", "--name", "X")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: missing --server\n")
    assert "fix:   give --name and one --server" in result.stderr
    assert not (tmp_path / "x").exists()


def test_init_rejects_a_malformed_server_flag(hz: Hz, tmp_path: Path) -> None:
    result = hz("init", str(tmp_path / "x"), "-y", "--name", "X", "--server", "sg-01")
    assert result.exit_code == 2
    assert "  • --server 'sg-01' is not NAME=ADDRESS[:DISK,...]\n" in result.stderr
    assert not (tmp_path / "x").exists()


def test_init_rejects_a_bad_address_and_writes_nothing(hz: Hz, tmp_path: Path) -> None:
    flags = [*THREE[:4], "--server", "sg-03=10.20.0.300"]
    result = hz(
        "init", str(tmp_path / "x"), "-y", "--name", "X", "--management", "10.20.0.0/24", *flags
    )
    assert result.exit_code == 2
    assert (
        "servers[2].address: Input is not a valid IPv4 address (got '10.20.0.300')" in result.stderr
    )
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_init_from_a_file_keeps_it_as_it_is(hz: Hz, tmp_path: Path) -> None:
    folder = tmp_path / "stgeorge"
    result = hz("init", str(folder), "--from", str(SAMPLE_SITE))
    assert result.exit_code == 0, result.output
    assert (folder / "site.yaml").read_text() == SAMPLE_SITE.read_text()
    assert "St George's Hospital (stgeorge) — 8 servers" in result.stdout


def test_init_never_overwrites_without_force(hz: Hz, tmp_path: Path) -> None:
    folder = tmp_path / "site"
    assert hz("init", str(folder), "--from", str(SAMPLE_SITE)).exit_code == 0
    result = hz("init", str(folder), "--from", str(LAB_SITE))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {folder / 'site.yaml'} already exists\n"
        "  cause: hzcloud init never overwrites a site\n"
        "  fix:   use another folder, or pass --force to replace it\n"
    )
    assert (folder / "site.yaml").read_text() == SAMPLE_SITE.read_text()
    # the same text again is not an overwrite
    assert hz("init", str(folder), "--from", str(SAMPLE_SITE)).exit_code == 0
    forced = hz("init", str(folder), "--from", str(LAB_SITE), "--force")
    assert forced.exit_code == 0
    assert (folder / "site.yaml").read_text() == LAB_SITE.read_text()


# The wizard: tests/unit/test_wizard.py


@pytest.mark.parametrize("example", ["sample-hospital", "lab", "init"])
def test_a_dry_run_of_every_example_exits_0_and_leaves_the_folder_as_it_was(
    hz: Hz, tmp_path: Path, example: str
) -> None:
    folder = tmp_path / example
    if example == "init":
        made = hz("init", str(folder), "-y", "--name", "St George's", *THREE)
        assert made.exit_code == 0, made.output
    else:
        folder.mkdir()
        (folder / "site.yaml").write_bytes(
            (ROOT / "inventories" / example / "site.yaml").read_bytes()
        )
    before = snapshot(folder)
    for output in ("text", "json"):
        result = hz("up", str(folder), "--dry-run", "-o", output)
        assert result.exit_code == 0, result.output
        assert snapshot(folder) == before
    dry = json.loads(result.stdout)
    assert dry["phases"], dry  # it says what would run
