"""secrets.yaml: made once, never made anew, refused (exit 2, never quoted) when shared or damaged."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from conftest import REFUSING_SITE

from hzcloud.errors import SiteError, UsageError
from hzcloud.secrets import GENERATED, ensure_secrets, read_secrets

if TYPE_CHECKING:
    from conftest import Hz

ROOT = Path(__file__).resolve().parents[2]
LAB_SITE = ROOT / "inventories" / "lab" / "site.yaml"

PASSWORD = "Zx9-not-to-be-printed-Q7"


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        data = (
            os.readlink(path).encode()
            if path.is_symlink()
            else path.read_bytes()
            if path.is_file()
            else b""
        )
        out[str(path.relative_to(folder))] = (st.st_mode, data)
    return out


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "lab"
    folder.mkdir()
    shutil.copy(LAB_SITE, folder / "site.yaml")
    return folder


def write_secrets(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "secrets.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def full(**changes: str | None) -> str:
    values: dict[str, str | None] = {k: f"value-of-{k}" for k in GENERATED}
    values.update(changes)
    return yaml.safe_dump({k: v for k, v in values.items() if v is not None})


def refused(hz: Hz, folder: Path, args: list[str], stderr: str) -> None:
    """The command exits 2 with stderr exactly, quotes no secret, and writes nothing."""
    before = snapshot(folder)
    result = hz(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr == stderr
    assert PASSWORD not in result.output
    assert "value-of-" not in result.output
    assert "Traceback" not in result.output
    assert snapshot(folder) == before


def problems(*lines: str) -> str:
    n = len(lines) // 2
    head = f"error: {n} problem{'s' if n != 1 else ''} in the site files; nothing was changed\n"
    return head + "".join(
        f"  • {lines[i]}\n      fix: {lines[i + 1]}\n" for i in range(0, len(lines), 2)
    )


def restore(path: Path) -> str:
    return (
        f"restore your copy of {path} (README: Secrets); only if this site was never deployed, "
        "remove the file and hzcloud makes new secrets"
    )


# Made once


def test_a_new_site_gets_every_secret_private(site: Path, hz: Hz) -> None:
    assert hz("render", str(site)).exit_code == 0
    path = site / "secrets.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = read_secrets(site)
    assert set(values) == set(GENERATED)
    assert len(set(values.values())) == len(GENERATED)
    assert sorted(p.name for p in site.iterdir()) == ["pki", "secrets.yaml", "site.yaml", "state"]


def test_an_existing_file_is_read_as_it_is(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full(redis_password=PASSWORD))
    text = path.read_text()
    result = hz("render", str(site))
    assert result.exit_code == 0, result.output
    assert path.read_text() == text
    assert read_secrets(site)["redis_password"] == PASSWORD


def test_the_api_makes_then_keeps(site: Path) -> None:
    path = ensure_secrets(site)
    first = read_secrets(site)
    assert ensure_secrets(site) == path
    assert read_secrets(site) == first


# Never made anew


@pytest.mark.parametrize(
    "command",
    [
        ["render"],
        ["up", "--dry-run", "--only", "preflight"],
        ["up", "--only", "preflight"],
        ["verify"],
    ],
)
def test_an_empty_file_is_refused_not_refilled(site: Path, hz: Hz, command: list[str]) -> None:
    path = write_secrets(site, "")
    refused(
        hz,
        site,
        [*command, str(site)],
        problems(f"{path.resolve()} is empty", restore(path.resolve())),
    )


def test_a_missing_key_is_named_with_the_flag_that_makes_it(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full(redis_password=None, ceph_fsid=None))
    fix = (
        "restore your copy of {p}, or pass --new-secret {k} to make a new one on purpose "
        "(a deployed service still holds the old one)"
    )
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(
            f"{path} redis_password: is missing",
            fix.format(p=path, k="redis_password"),
            f"{path} ceph_fsid: is missing",
            fix.format(p=path, k="ceph_fsid"),
        ),
    )


def test_new_secret_makes_only_the_keys_named(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full(redis_password=None))
    before = yaml.safe_load(path.read_text())
    result = hz("render", str(site), "--new-secret", "redis_password")
    assert result.exit_code == 0, result.output
    after = read_secrets(site)
    assert set(after) == set(GENERATED)
    assert {k: v for k, v in after.items() if k != "redis_password"} == before
    assert len(after["redis_password"]) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in site.iterdir()) == ["pki", "secrets.yaml", "site.yaml", "state"]


def test_new_secret_on_up(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full(pulumi_passphrase=None))
    dry = ["up", str(site), "--dry-run", "--only", "preflight"]
    # a dry run checks the file and writes nothing, flag or not
    refused(
        hz,
        site,
        dry,
        problems(
            f"{path.resolve()} pulumi_passphrase: is missing",
            f"restore your copy of {path.resolve()}, or pass --new-secret pulumi_passphrase to "
            "make a new one on purpose (a deployed service still holds the old one)",
        ),
    )
    before = snapshot(site)
    assert hz(*dry, "--new-secret", "pulumi_passphrase").exit_code == 0
    assert snapshot(site) == before
    # up makes it before the first phase, even one that then fails (no server answers here)
    (site / "site.yaml").write_text(REFUSING_SITE)
    result = hz("up", str(site), "--only", "preflight", "--new-secret", "pulumi_passphrase")
    assert result.exit_code == 1, result.output
    assert "pulumi_passphrase" in read_secrets(site)


def test_new_secret_never_replaces_one(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full())
    before = snapshot(site)
    result = hz("render", str(site), "--new-secret", "redis_password")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --new-secret redis_password: {path} already holds it\n"
        "  cause: --new-secret only makes a secret that is missing; hzcloud never replaces one\n"
        "  fix:   drop --new-secret redis_password\n"
    )
    assert snapshot(site) == before


def test_new_secret_knows_its_keys(site: Path, hz: Hz) -> None:
    write_secrets(site, full())
    before = snapshot(site)
    result = hz("render", str(site), "--new-secret", "root_password")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --new-secret root_password: no such secret\n"
        "  cause: hzcloud makes only the secrets it knows\n"
        f"  fix:   choose from: {', '.join(GENERATED)}\n"
    )
    assert snapshot(site) == before


# Damaged: the file's text is never shown (YAML errors quote the line, a password beside it)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"redis_password: {PASSWORD}\npatroni_rest_password: '{PASSWORD}\n", 3),
        (f"redis_password: {PASSWORD}: x\n", 1),
        (f"redis_password:\n\t{PASSWORD}\n", 2),
        (f"- {PASSWORD}\n", 1),
    ],
)
def test_a_damaged_file_is_refused_without_quoting_it(
    site: Path, hz: Hz, text: str, line: int
) -> None:
    path = write_secrets(site, text)
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(
            f"{path.resolve()}:{line} is damaged (not a YAML mapping)", restore(path.resolve())
        ),
    )


def test_binary_junk_is_refused(site: Path, hz: Hz) -> None:
    path = site / "secrets.yaml"
    path.write_bytes(b"\xff\xfe" + PASSWORD.encode())
    path.chmod(0o600)
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(f"{path.resolve()}:1 is damaged (not a YAML mapping)", restore(path.resolve())),
    )


def test_duplicate_keys_are_refused(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full() + f"redis_password: {PASSWORD}\n")
    line = len(GENERATED) + 1
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(
            f"{path.resolve()}:{line} redis_password: a key appears twice",
            f"keep one of them: {restore(path.resolve())}",
        ),
    )


def test_a_value_that_is_not_text_is_refused(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full(redis_password=None) + "redis_password: [a, b]\n")
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(
            f"{path.resolve()}:{len(GENERATED)} redis_password: value is not a piece of text",
            restore(path.resolve()),
        ),
    )


# Shared or linked: refused with the exact fix, never chmodded behind the operator's back


@pytest.mark.parametrize(
    ("mode", "who"), [(0o644, "other users"), (0o640, "its group"), (0o660, "its group")]
)
def test_a_readable_file_is_refused_with_the_chmod(site: Path, hz: Hz, mode: int, who: str) -> None:
    path = write_secrets(site, full(), mode)
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(
            f"{path.resolve()} can be read or written by {who} (mode {mode:04o})",
            f"chmod 600 {path.resolve()}",
        ),
    )
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_the_chmod_fix_works(site: Path, hz: Hz) -> None:
    path = write_secrets(site, full(), 0o644)
    assert hz("render", str(site)).exit_code == 2
    path.chmod(0o600)
    assert hz("render", str(site)).exit_code == 0


@pytest.mark.parametrize("inside", [True, False])
def test_a_linked_file_is_refused_and_its_target_untouched(
    site: Path, hz: Hz, inside: bool
) -> None:
    where = site if inside else site.parent
    target = write_secrets(where, full(), 0o644)
    if inside:
        target = target.rename(site / "kept.yaml")
    link = site / "secrets.yaml"
    link.symlink_to(target)
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(
            f"{site.resolve() / 'secrets.yaml'} is a symbolic link; "
            "this file must be the file itself",
            "replace the link with the file: cp --remove-destination "
            f'"$(readlink -f {site.resolve() / "secrets.yaml"})" {site.resolve() / "secrets.yaml"}',
        ),
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_fifo_is_refused(site: Path, hz: Hz) -> None:
    path = site / "secrets.yaml"
    os.mkfifo(path, 0o600)
    refused(
        hz,
        site,
        ["render", str(site)],
        problems(
            f"{path.resolve()} is a named pipe, not a regular file",
            "make it a regular file: hzcloud never reads pipes or devices",
        ),
    )


def test_the_api_raises_the_same_errors(site: Path) -> None:
    write_secrets(site, "")
    with pytest.raises(SiteError) as info:
        read_secrets(site)
    assert info.value.exit_code == 2
    with pytest.raises(UsageError):
        ensure_secrets(site, ["no_such_secret"])


def test_a_file_made_meanwhile_is_kept_not_overwritten(site: Path) -> None:
    from hzcloud.secrets import _write

    path = write_secrets(site, full(redis_password=PASSWORD))
    text = path.read_text()
    with pytest.raises(FileExistsError):
        _write(path, {k: "other" for k in GENERATED}, replace=False)
    assert path.read_text() == text
    assert sorted(p.name for p in site.iterdir()) == ["secrets.yaml", "site.yaml"]
