"""`hzcloud init` as a conversation: each answer checked when given, proposals that follow it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hzcloud import wizard
from hzcloud.model import load_site

if TYPE_CHECKING:
    from conftest import Hz


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """CliRunner's stdin is a pipe; these tests answer as a person at a terminal would."""
    monkeypatch.setattr(wizard, "stdin_is_terminal", lambda: True)


def answers(*lines: str) -> str:
    return "\n".join(lines) + "\n"


WIZARD = answers(
    "Test Hospital",  # hospital name
    "test",  # site code (proposed: test-hospital)
    "2",  # how many servers: too few, asked again with the reason
    "65",  # too many, asked again
    "3",
    "",  # server 1 name: keep test-01
    "10.20.0.11",  # its address (no proposal for the first)
    "",  # its disks: keep /dev/sdb
    "db-02",  # server 2 name
    "",  # address: keep 10.20.0.12
    "/dev/sdb, /dev/sdc",  # disks
    "",  # server 3 name: keep db-03, the pattern just typed
    "",  # address: keep 10.20.0.13
    "/dev/nvme0n1",  # disks
    "hzadmin",  # SSH user
    "",  # SSH key: keep ~/.ssh/id_ed25519
    "",  # management: keep the guess 10.20.0.0/24
    "",  # PostgreSQL VIP: keep the guess
    "10.20.0.200",  # Kubernetes VIP
    "http://10.20.0.5:3142",  # mirror
    "n",  # run hzcloud up now? no
)


@pytest.mark.usefixtures("terminal")
def test_the_wizard_writes_a_valid_site(hz: Hz, tmp_path: Path) -> None:
    folder = tmp_path / "test"
    result = hz("init", str(folder), input=WIZARD)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("How many servers (3 to 64) [8]:") == 3
    assert "  test-01 disks for Ceph (comma-separated, '-' for none) [/dev/sdb]:" in result.stdout
    assert "Server 3 name [db-03]:" in result.stdout
    assert "Free address for PostgreSQL clients [10.20.0.249]:" in result.stdout
    site = load_site(folder)
    assert (site.hospital.name, site.hospital.code) == ("Test Hospital", "test")
    assert [(s.name, str(s.address), s.disks) for s in site.servers] == [
        ("test-01", "10.20.0.11", ["/dev/sdb"]),
        ("db-02", "10.20.0.12", ["/dev/sdb", "/dev/sdc"]),
        ("db-03", "10.20.0.13", ["/dev/nvme0n1"]),
    ]
    assert (site.ssh.user, site.ssh.key) == ("hzadmin", "~/.ssh/id_ed25519")
    net = site.networks
    assert str(net.management) == "10.20.0.0/24"
    assert (str(net.postgres_vip), str(net.kubernetes_vip)) == ("10.20.0.249", "10.20.0.200")
    assert str(net.mirror) == "http://10.20.0.5:3142/"
    assert hz("validate", str(folder)).exit_code == 0
    assert f"next: hzcloud up {folder}" in result.stdout


@pytest.mark.usefixtures("terminal")
def test_the_wizard_keeps_every_proposal(hz: Hz, tmp_path: Path) -> None:
    folder = tmp_path / "general"
    first = ["General", "", "3", "", "10.0.5.21", ""]
    rest = ["", "", ""] * 2
    result = hz("init", str(folder), input=answers(*first, *rest, "", "", "", "", "", "", "n"))
    assert result.exit_code == 0, result.output
    site = load_site(folder)
    assert site.hospital.code == "general"
    assert [s.name for s in site.servers] == ["general-01", "general-02", "general-03"]
    assert [str(s.address) for s in site.servers] == ["10.0.5.21", "10.0.5.22", "10.0.5.23"]
    assert all(s.disks == ["/dev/sdb"] for s in site.servers)
    assert site.ssh.user == "root"
    assert site.networks.mirror is None


@pytest.mark.usefixtures("terminal")
def test_proposals_follow_the_pattern_typed(hz: Hz, tmp_path: Path) -> None:
    head = ["St George's", "sg", "4", "sg-01", "10.20.0.11", "/dev/sdb,/dev/sdc"]
    result = hz("init", str(tmp_path / "sg"), input=answers(*head, *[""] * 9, *[""] * 6, "n"))
    assert result.exit_code == 0, result.output
    for line in (
        "Server 2 name [sg-02]:",
        "  sg-02 address [10.20.0.12]:",
        "  sg-02 disks for Ceph (comma-separated, '-' for none) [/dev/sdb, /dev/sdc]:",
        "Server 4 name [sg-04]:",
        "  sg-04 address [10.20.0.14]:",
    ):
        assert line in result.stdout
    site = load_site(tmp_path / "sg")
    assert [(s.name, str(s.address)) for s in site.servers] == [
        (f"sg-0{i}", f"10.20.0.1{i}") for i in range(1, 5)
    ]
    assert all(s.disks == ["/dev/sdb", "/dev/sdc"] for s in site.servers)


def test_proposals_skip_what_is_taken() -> None:
    assert wizard.next_name("db-09", "x", 2, set()) == "db-10"
    assert wizard.next_name("db-009", "x", 2, {"db-010"}) == "db-011"
    assert wizard.next_name("alpha", "x", 2, set()) == "x-02"
    assert wizard.next_address("10.20.0.11", {"10.20.0.12"}) == "10.20.0.13"
    assert wizard.next_address("255.255.255.255", set()) == ""


# Every answer is checked when it is given, and asked again with the reason.

# (answer, the line that follows it); then the answer that is accepted.
MISTAKES = [
    ("Bad Code", "Error: 'Bad Code' is not a site code: lowercase letters, digits and '-', e.g. stgeorge"),
    ("test", ""),
    ("abc", "Error: 'abc' is not a number: give a whole number from 3 to 64"),
    ("2", "Error: a site needs at least 3 servers: PostgreSQL, etcd, Redis and Ceph each keep a quorum of 3"),
    ("65", "Error: one site holds at most 64 servers: split the hospital into several sites"),
    ("3", ""),
    ("Sg_01", "Error: 'Sg_01' is not a host name: lowercase letters, digits and '-', at most 63 characters"),
    ("all", "Error: 'all' is also an Ansible group or pattern: choose another name"),
    ("1234", "Error: '1234' reads as a number or keyword in YAML: e.g. test-1234"),
    ("sg-01", ""),
    ("abc", "Error: 'abc' is not an IPv4 address: write one such as 10.20.0.11"),
    ("10.20.0.300", "Error: '10.20.0.300' is not an IPv4 address: write one such as 10.20.0.11"),
    ("10.20.0.11", ""),
    ("sdc", "Error: 'sdc' is not a device path: write e.g. /dev/sdc"),
    ("/dev/../etc/passwd", "Error: '/dev/../etc/passwd': '..' is not allowed in a disk path"),
    ("/dev/sdb, /dev/sdb", "Error: a disk is listed twice"),
    ("", ""),  # /dev/sdb
    ("sg-01", "Error: 'sg-01' is already server 1's name"),
    ("", ""),  # sg-02
    ("10.20.0.11", "Error: 10.20.0.11 is already sg-01's address"),
    ("", ""),  # 10.20.0.12
    ("-", "Error: Ceph keeps 3 copies, each on a server with a disk: give one here (with '-', at most 2 servers could have one)"),
    ("", ""),  # /dev/sdb
    ("", ""),  # sg-03
    ("", ""),  # 10.20.0.13
    ("", ""),  # /dev/sdb
    ("Root", "Error: 'Root' is not a Unix user name such as root or hzadmin"),
    ("", ""),  # root
    ("", ""),  # ~/.ssh/id_ed25519
    ("banana", "Error: 'banana' is not a network: write one in CIDR form such as 10.20.0.0/24"),
    ("10.20.0.5/24", "Error: 10.20.0.5/24 has host bits set: the network is 10.20.0.0/24"),
    ("10.30.0.0/24", "Error: sg-01's address 10.20.0.11 is outside 10.30.0.0/24"),
    ("10.20.0.0/30", "Error: sg-01's address 10.20.0.11 is outside 10.20.0.0/30"),
    ("10.0.0.0/8", "Error: 10.0.0.0/8 overlaps the pod network 10.42.0.0/16: choose another management network"),
    ("", ""),  # 10.20.0.0/24
    ("10.20.0.12", "Error: 10.20.0.12 is sg-02's address: a VIP needs a free address"),
    ("10.20.1.5", "Error: 10.20.1.5 is not a usable address of the management network 10.20.0.0/24"),
    ("10.20.0.255", "Error: 10.20.0.255 is not a usable address of the management network 10.20.0.0/24"),
    ("", ""),  # 10.20.0.249
    ("10.20.0.249", "Error: 10.20.0.249 is already the PostgreSQL address: give each VIP its own"),
    ("", ""),  # 10.20.0.250
    ("ftp://mirror", "Error: 'ftp://mirror' is not an http:// or https:// URL: write e.g. http://10.20.0.5:3142, or '-' for none"),
    ("", ""),  # none
]  # fmt: skip


@pytest.mark.usefixtures("terminal")
def test_each_answer_is_checked_when_given_and_asked_again(hz: Hz, tmp_path: Path) -> None:
    folder = tmp_path / "t"
    result = hz("init", str(folder), input=answers("Test", *(a for a, _ in MISTAKES), "n"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == [reason for _, reason in MISTAKES if reason]
    for line in errors:  # each reason is followed by the same question again
        at = lines.index(line)
        assert lines[at + 1].split(":")[0] == lines[at - 1].split(":")[0]
    for raw in ("Input should", "validation error", "pydantic", "Traceback", "type="):
        assert raw not in result.output
    site = load_site(folder)
    assert [(s.name, str(s.address), s.disks) for s in site.servers] == [
        ("sg-01", "10.20.0.11", ["/dev/sdb"]),
        ("sg-02", "10.20.0.12", ["/dev/sdb"]),
        ("sg-03", "10.20.0.13", ["/dev/sdb"]),
    ]
    assert (str(site.networks.postgres_vip), str(site.networks.kubernetes_vip)) == (
        "10.20.0.249",
        "10.20.0.250",
    )


@pytest.mark.usefixtures("terminal")
def test_a_management_network_given_as_a_flag_checks_each_address(hz: Hz, tmp_path: Path) -> None:
    head = ["T", "t", "3", "", "10.30.0.11", "10.20.0.11", "", "", "", "", "", "", ""]
    result = hz(
        "init", str(tmp_path / "t"), "--management", "10.20.0.0/24",
        input=answers(*head, "", "", "", "", "", "n"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Error: 10.30.0.11 is outside the management network 10.20.0.0/24\n" in result.stdout


# Not a terminal: nothing asked, nothing written.


def test_a_pipe_for_stdin_is_bad_input(hz: Hz, tmp_path: Path) -> None:
    result = hz("init", str(tmp_path / "x"), input=WIZARD)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: hzcloud init asks its questions on a terminal, and stdin is not one\n"
        "  cause: nothing was asked and nothing was written\n"
        "  fix:   use -y with --name and --server flags, or --from site.yaml\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_flags_and_from_need_no_terminal(hz: Hz, tmp_path: Path) -> None:
    flags = ["--server", "a-01=10.1.0.11:/dev/sdb", "--server", "a-02=10.1.0.12:/dev/sdb"]
    flags += ["--server", "a-03=10.1.0.13:/dev/sdb"]
    assert hz("init", str(tmp_path / "a"), "-y", "--name", "A", *flags).exit_code == 0
    assert hz("init", str(tmp_path / "b"), "--from", str(tmp_path / "a")).exit_code == 0


# The same conversation on a real terminal (a pseudo-terminal), as an operator has it.


def test_the_wizard_on_a_pseudo_terminal(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    folder = tmp_path / "pty"
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    child = pexpect.spawn(
        sys.executable, ["-m", "hzcloud", "init", str(folder)], env=env, encoding="utf-8",
        timeout=30, cwd=str(Path(__file__).resolve().parents[2] / "cli"),
    )  # fmt: skip
    for prompt, answer in [
        ("Hospital name", "Pty Hospital"),
        (r"Site code \[pty-hospital\]", "pty"),
        (r"How many servers \(3 to 64\) \[8\]", "2"),
        ("a site needs at least 3 servers", None),
        (r"How many servers \(3 to 64\) \[8\]", "3"),
        (r"Server 1 name \[pty-01\]", "p-01"),
        ("p-01 address", "10.9.0.11"),
        (r"p-01 disks .*\[/dev/sdb\]", ""),
        (r"Server 2 name \[p-02\]", ""),
        (r"p-02 address \[10.9.0.12\]", ""),
        (r"p-02 disks .*\[/dev/sdb\]", ""),
        (r"Server 3 name \[p-03\]", ""),
        (r"p-03 address \[10.9.0.13\]", ""),
        (r"p-03 disks .*\[/dev/sdb\]", ""),
        (r"SSH user \[root\]", ""),
        ("SSH private key", ""),
        (r"Management network \[10.9.0.0/24\]", ""),
        (r"PostgreSQL clients \[10.9.0.249\]", ""),
        (r"Kubernetes API \[10.9.0.250\]", ""),
        ("apt mirror", ""),
        (r"Run hzcloud up now\?", "n"),
    ]:
        child.expect(prompt)
        if answer is not None:
            child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert [s.name for s in load_site(folder).servers] == ["p-01", "p-02", "p-03"]


@pytest.mark.usefixtures("terminal")
def test_an_existing_site_is_refused_before_the_first_question(hz: Hz, tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("hospital: {}\n")
    result = hz("init", str(tmp_path), input=WIZARD)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {tmp_path / 'site.yaml'} already exists\n"
        "  cause: hzcloud init never overwrites a site\n"
        "  fix:   use another folder, or pass --force to replace it\n"
    )
    assert (tmp_path / "site.yaml").read_text() == "hospital: {}\n"


@pytest.mark.usefixtures("terminal")
def test_a_read_only_folder_is_refused_before_the_first_question(read_only_site: Path) -> None:
    from test_hostile import hz_without_write, read_only_error, snapshot

    before = snapshot(read_only_site.parent)
    code, stdout, stderr = hz_without_write("init", str(read_only_site / "new"))
    assert (code, stdout) == (2, "")
    assert stderr == read_only_error(read_only_site)
    assert snapshot(read_only_site.parent) == before
