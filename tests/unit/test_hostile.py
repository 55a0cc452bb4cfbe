"""Hostile site folders: exit 2, the exact message, no traceback, nothing quoted, nothing written."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from hzcloud.app import app

if TYPE_CHECKING:
    from conftest import Hz

ROOT = Path(__file__).resolve().parents[2]
LAB_SITE = ROOT / "inventories" / "lab" / "site.yaml"
SAMPLE_SITE = ROOT / "inventories" / "sample-hospital" / "site.yaml"

# What a password file looks like: a line ending in ':' is a YAML key, and was quoted back.
SHADOW = "root:$y$j9T$Zm9vYmFy$c2VjcmV0aGFzaA:19000:0:99999:7:::\nhz:*:19000:0:99999:7:::\n"

# Every command that reads a site folder.
READERS = [["validate"], ["plan"], ["render"], ["up", "--dry-run"], ["up"], ["status"], ["verify"]]

Snapshot = dict[str, tuple[int, bytes]]


def snapshot(folder: Path) -> Snapshot:
    """Every entry under folder: its mode and its bytes (a link's target, a folder's nothing)."""
    out: Snapshot = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode) and st.st_size > 1024**2:  # the sparse 3 GB file
            data = f"{st.st_size} bytes, mtime {st.st_mtime_ns}".encode()
        elif stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
        else:
            data = b""
        out[str(path.relative_to(folder))] = (st.st_mode, data)
    return out


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: reading a FIFO would block for ever."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer in {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_problem(place: str, what: str, fix: str) -> str:
    return (
        "error: 1 problem in the site files; nothing was changed\n"
        f"  • {place} {what}\n"
        f"      fix: {fix}\n"
    )


def assert_refused(hz: Hz, folder: Path, args: list[str], stderr: str) -> None:
    before = snapshot(folder.parent)
    with deadline(20):
        result = hz(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr == stderr
    assert "Traceback" not in result.output
    assert "c2VjcmV0aGFzaA" not in result.output
    assert snapshot(folder.parent) == before


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An empty site folder, with a folder beside it holding a password file."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "shadow").write_text(SHADOW)
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


LINK_FIX = "keep the site's files inside its folder: put the file itself there, not a link"


@pytest.mark.parametrize("command", READERS)
def test_a_site_yaml_linked_out_of_the_folder_is_never_read(
    hz: Hz, site: Path, command: list[str]
) -> None:
    (site / "site.yaml").symlink_to(site.parent / "elsewhere" / "shadow")
    real = Path(os.path.realpath(site))
    assert_refused(
        hz,
        site,
        [*command, str(site)],
        one_problem(
            f"{site / 'site.yaml'}",
            f"is a symbolic link to {real.parent / 'elsewhere' / 'shadow'}, "
            f"outside the site folder {real}",
            LINK_FIX,
        ),
    )


def test_a_site_yaml_linked_to_etc_shadow_is_never_read(hz: Hz, site: Path) -> None:
    (site / "site.yaml").symlink_to("/etc/shadow")
    real = Path(os.path.realpath(site))
    assert_refused(
        hz,
        site,
        ["validate", str(site)],
        one_problem(
            f"{site / 'site.yaml'}",
            f"is a symbolic link to /etc/shadow, outside the site folder {real}",
            LINK_FIX,
        ),
    )


def test_a_site_yaml_linked_to_dev_zero_is_never_read(hz: Hz, site: Path) -> None:
    (site / "site.yaml").symlink_to("/dev/zero")
    real = Path(os.path.realpath(site))
    assert_refused(
        hz,
        site,
        ["render", str(site)],
        one_problem(
            f"{site / 'site.yaml'}",
            f"is a symbolic link to /dev/zero, outside the site folder {real}",
            LINK_FIX,
        ),
    )


def test_init_force_replaces_a_link_never_writes_through_it(hz: Hz, site: Path) -> None:
    target = site.parent / "elsewhere" / "shadow"
    (site / "site.yaml").symlink_to(target)
    result = hz("init", str(site), "--from", str(SAMPLE_SITE), "--force")
    assert result.exit_code == 0, result.output
    assert target.read_text() == SHADOW
    assert not (site / "site.yaml").is_symlink()
    assert (site / "site.yaml").read_text() == SAMPLE_SITE.read_text()
    assert stat.S_IMODE((site / "site.yaml").stat().st_mode) == 0o644
    assert sorted(p.name for p in site.iterdir()) == ["site.yaml"]


def test_a_link_inside_the_folder_is_followed(hz: Hz, site: Path) -> None:
    shutil.copy(LAB_SITE, site / "lab-v2.yaml")
    (site / "site.yaml").symlink_to("lab-v2.yaml")
    result = hz("validate", str(site))
    assert result.exit_code == 0, result.output


PIPE_FIX = "make it a regular file: hzcloud never reads pipes or devices"


@pytest.mark.parametrize("command", [["validate"], ["render"], ["up", "--dry-run"]])
def test_a_fifo_is_refused_without_waiting(hz: Hz, site: Path, command: list[str]) -> None:
    os.mkfifo(site / "site.yaml")
    assert_refused(
        hz,
        site,
        [*command, str(site)],
        one_problem(f"{site / 'site.yaml'}", "is a named pipe, not a regular file", PIPE_FIX),
    )


def test_a_link_to_a_fifo_inside_the_folder_is_refused(hz: Hz, site: Path) -> None:
    os.mkfifo(site / "pipe")
    (site / "site.yaml").symlink_to("pipe")
    assert_refused(
        hz,
        site,
        ["validate", str(site)],
        one_problem(f"{site / 'site.yaml'}", "is a named pipe, not a regular file", PIPE_FIX),
    )


def test_a_fifo_given_to_init_from_is_refused(hz: Hz, site: Path) -> None:
    os.mkfifo(site / "site.yaml")
    assert_refused(
        hz,
        site,
        ["init", str(site.parent / "new"), "--from", str(site / "site.yaml")],
        one_problem(f"{site / 'site.yaml'}", "is a named pipe, not a regular file", PIPE_FIX),
    )


def test_a_password_file_copied_in_is_not_quoted(hz: Hz, site: Path) -> None:
    (site / "site.yaml").write_text(SHADOW)
    assert_refused(
        hz,
        site,
        ["validate", str(site)],
        one_problem("site.yaml:1", "keys must be plain names", "write the key as a plain word"),
    )


def test_a_huge_file_is_refused_from_its_size(hz: Hz, site: Path) -> None:
    with (site / "site.yaml").open("wb") as fh:
        fh.truncate(3 * 1024**3)  # sparse: 3 GB that were read whole before
    assert_refused(
        hz,
        site,
        ["validate", str(site)],
        one_problem(
            "site.yaml",
            f"file is {3 * 1024**3} bytes; a site file is at most 1048576 bytes",
            "check that this is the right file",
        ),
    )


def test_a_disk_path_climbing_out_of_dev_is_refused(hz: Hz, site: Path) -> None:
    text = LAB_SITE.read_text()
    assert "disks: [/dev/vdb]" in text
    (site / "site.yaml").write_text(
        text.replace("disks: [/dev/vdb]", "disks: [/dev/../etc/passwd]", 1)
    )
    line = 1 + text[: text.index("disks: [/dev/vdb]")].count("\n")
    assert_refused(
        hz,
        site,
        ["render", str(site)],
        one_problem(
            f"site.yaml:{line} servers[0].disks[0]:",
            "'..' is not allowed in a disk path (got '/dev/../etc/passwd')",
            "write the device path, e.g. /dev/sdb",
        ),
    )


def test_disk_paths_are_normalised(tmp_path: Path) -> None:
    from hzcloud.model import load_site

    site = tmp_path / "site.yaml"
    site.write_text(LAB_SITE.read_text().replace("disks: [/dev/vdb]", "disks: [/dev//./vdb]", 1))
    assert load_site(site).servers[0].disks == ["/dev/vdb"]


def test_an_address_written_as_a_number_is_refused(hz: Hz, site: Path) -> None:
    text = LAB_SITE.read_text()
    assert "address: 10.77.0.11" in text
    (site / "site.yaml").write_text(text.replace("address: 10.77.0.11", "address: 172818443"))
    line = 1 + text[: text.index("address: 10.77.0.11")].count("\n")
    assert_refused(
        hz,
        site,
        ["plan", str(site)],
        one_problem(
            f"site.yaml:{line} servers[0].address:",
            "an address or network is written dotted, not as a number (got 172818443)",
            "write it dotted, e.g. 10.20.0.11 or 10.20.0.0/24",
        ),
    )


def test_a_network_written_as_a_number_is_refused(tmp_path: Path) -> None:
    from hzcloud.errors import SiteError
    from hzcloud.model import load_site

    site = tmp_path / "site.yaml"
    site.write_text(
        LAB_SITE.read_text().replace("management: 10.77.0.0/24", "management: 167772160")
    )
    with pytest.raises(SiteError) as info:
        load_site(site)
    assert [p.key for p in info.value.problems] == ["networks.management"]
    assert info.value.problems[0].what.startswith("an address or network is written dotted")


# A read-only site folder. root writes anywhere except on a read-only file system, so as root the
# command runs in a child process as nobody, for whom a root-owned 0555 folder is read-only.


def hz_without_write(*args: str) -> tuple[int, str, str]:
    if os.geteuid() != 0:
        res = CliRunner().invoke(app, list(args))
        return res.exit_code, res.stdout, res.stderr
    # The child, as nobody, may not read the interpreter's own library (here it lives under
    # /root): what the commands import lazily is imported before the fork.
    for module in ("hzcloud.engine", "hzcloud.report", "hzcloud.render", "hzcloud.secrets"):
        importlib.import_module(module)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            res = CliRunner().invoke(app, list(args))
            payload = [res.exit_code, res.stdout, res.stderr]
        except BaseException as exc:
            payload = [99, "", repr(exc)]
        with os.fdopen(write_end, "w") as out:
            json.dump(payload, out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        code, stdout, stderr = json.load(inp)
    os.waitpid(pid, 0)
    return int(code), str(stdout), str(stderr)


def read_only_error(path: Path) -> str:
    return (
        f"error: cannot write in {path}: permission denied\n"
        "  cause: hzcloud keeps secrets.yaml and state/ in the site folder; nothing was changed\n"
        f"  fix:   make it writable (chmod u+w {path}), or run as its owner\n"
    )


def test_a_dry_run_in_a_read_only_site_folder_says_up_would_stop(read_only_site: Path) -> None:
    before = snapshot(read_only_site.parent)
    code, stdout, stderr = hz_without_write("up", "--dry-run", str(read_only_site))
    assert code == 0, stderr  # a dry run reports; like a missing artifact, this is in its report
    assert f"would stop before any host: cannot write in {read_only_site}: permission denied" in (
        " ".join(stdout.split())
    )
    assert f"fix: make it writable (chmod u+w {read_only_site})" in " ".join(stdout.split())
    code, stdout, stderr = hz_without_write("up", "--dry-run", "-o", "json", str(read_only_site))
    assert code == 0, stderr
    assert json.loads(stdout)["unwritable"]["what"] == (
        f"cannot write in {read_only_site}: permission denied"
    )
    assert snapshot(read_only_site.parent) == before


def test_a_dry_run_in_a_writable_site_folder_has_no_such_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.yaml").write_bytes(SAMPLE_SITE.read_bytes())
    res = CliRunner().invoke(app, ["up", "--dry-run", "-o", "json", str(site)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["unwritable"] is None


@pytest.mark.parametrize("command", [["render"], ["up", "--only", "preflight"]])
def test_a_read_only_site_folder_is_bad_input(read_only_site: Path, command: list[str]) -> None:
    before = snapshot(read_only_site.parent)
    code, stdout, stderr = hz_without_write(*command, str(read_only_site))
    assert (code, stdout) == (2, ""), stderr
    assert stderr == read_only_error(read_only_site)
    assert snapshot(read_only_site.parent) == before


def test_init_into_a_read_only_folder_is_bad_input(read_only_site: Path) -> None:
    before = snapshot(read_only_site.parent)
    new = read_only_site / "new"
    code, stdout, stderr = hz_without_write("init", str(new), "--from", str(SAMPLE_SITE))
    assert (code, stdout) == (2, ""), stderr
    assert stderr == read_only_error(read_only_site)
    assert snapshot(read_only_site.parent) == before


def test_a_read_only_state_folder_is_bad_input(hz: Hz) -> None:
    top = Path(tempfile.mkdtemp(prefix="hz-ro-"))
    try:
        top.chmod(0o755)
        folder = top / "site"
        folder.mkdir()
        shutil.copy(LAB_SITE, folder / "site.yaml")
        assert hz("render", str(folder)).exit_code == 0
        group_vars = folder / "state" / "group_vars"
        if os.geteuid() == 0:  # the site belongs to nobody, except one folder of its state
            for path in [folder, *folder.rglob("*")]:
                if path != group_vars:
                    os.chown(path, 65534, 65534, follow_symlinks=False)
        else:
            group_vars.chmod(0o555)
        site_yaml = folder / "site.yaml"
        site_yaml.write_text(LAB_SITE.read_text().replace("10.77.0.1:3142", "10.77.0.2:3142"))
        before = snapshot(folder)
        code, stdout, stderr = hz_without_write("render", str(folder))
        assert (code, stdout) == (2, ""), stderr
        assert stderr == read_only_error(group_vars)
        assert snapshot(folder) == before
    finally:
        for path in [top, *top.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o700)
        shutil.rmtree(top)
