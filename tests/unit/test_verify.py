"""`hzcloud verify` without a lab: how a Ceph status is told, and how failures read."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hzcloud.outcome import said
from hzcloud.phases.storage import _ceph_health
from hzcloud.plan import NodePlan, Plan
from hzcloud.verify import _node_checks

if TYPE_CHECKING:
    from conftest import Hz


def test_ceph_ok_is_just_ok() -> None:
    assert _ceph_health({"health": {"status": "HEALTH_OK", "checks": {}}}) == "HEALTH_OK"


def test_ceph_warning_names_each_check_and_its_message() -> None:
    status = {
        "health": {
            "status": "HEALTH_WARN",
            "checks": {
                "SLOW_OPS": {"severity": "HEALTH_WARN", "summary": {"message": "3 slow ops"}},
                "PG_AVAILABILITY": {"summary": {"message": "1 pg peering"}},
            },
        }
    }
    assert _ceph_health(status) == "HEALTH_WARN: SLOW_OPS 3 slow ops; PG_AVAILABILITY 1 pg peering"


def test_ceph_warning_without_checks_is_the_bare_status() -> None:
    assert _ceph_health({"health": {"status": "HEALTH_ERR"}}) == "HEALTH_ERR"


# Failures read as one line each: host, check, expected, seen — in text, JSON and JUnit alike.

UNREACHABLE_SITE = """\
hospital: {name: Verify Test, code: vt}
ssh: {port: 1, key: keys/none}
servers:
  - {name: vt-01, address: 127.0.0.11, disks: [/dev/vdb]}
  - {name: vt-02, address: 127.0.0.12, disks: [/dev/vdb]}
  - {name: vt-03, address: 127.0.0.13, disks: [/dev/vdb]}
networks: {management: 127.0.0.0/24}
"""


def refused(n: int) -> str:
    return f"exit 255: ssh: connect to host 127.0.0.1{n} port 1: Connection refused"


@pytest.fixture
def unreachable(tmp_path: Path) -> Path:
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client")
    folder = tmp_path / "vt"
    folder.mkdir()
    (folder / "site.yaml").write_text(UNREACHABLE_SITE)
    return folder


def test_an_unreachable_site_fails_with_one_readable_line_per_host(
    hz: Hz, unreachable: Path
) -> None:
    junit = unreachable / "verify.xml"
    result = hz("verify", str(unreachable), "--junit", str(junit))
    assert result.exit_code == 1
    assert (
        result.stdout
        == "".join(
            f"FAIL vt-0{n}: reachable: expected answers over SSH, seen {refused(n)}\n"
            for n in (1, 2, 3)
        )
        + "3 checks, 3 failed\n"
    )
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "3"
    case = suite.find("testcase")
    assert case is not None
    assert (case.get("classname"), case.get("name")) == ("vt-01", "reachable")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props == {"host": "vt-01", "expected": "answers over SSH", "seen": refused(1)}
    failure = case.find("failure")
    assert failure is not None
    assert (
        failure.get("message") == f"vt-01: reachable: expected answers over SSH, seen {refused(1)}"
    )
    assert failure.text == (
        f"host: vt-01\ncheck: reachable\nexpected: answers over SSH\nseen: {refused(1)}\n"
    )


def test_the_json_has_the_same_fields(hz: Hz, unreachable: Path) -> None:
    result = hz("verify", str(unreachable), "-o", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["passed"] is False
    assert doc["checks"][0] == {
        "host": "vt-01",
        "check": "reachable",
        "name": "reachable",
        "passed": False,
        "expected": "answers over SSH",
        "seen": refused(1),
    }


def test_testinfra_errors_are_told_in_words() -> None:
    import testinfra

    local = testinfra.get_host("local://")
    with pytest.raises(AssertionError) as info:
        local.run_expect([0], "echo gone >&2; exit 4")
    assert "CommandResult(" in str(info.value)  # what was printed before
    assert said(info.value) == "Unexpected exit code 4"
    result = local.run("echo first >&2; echo 'the reason' >&2; exit 255")
    assert said(RuntimeError(result)) == "exit 255: the reason"
    assert said(RuntimeError(local.run("exit 255"))) == "exit 255"
    assert said(OSError()) == "OSError"


def test_node_checks_on_a_real_host_never_print_a_repr() -> None:
    """This machine runs no Patroni: every failure must still read as expected/seen words."""
    import testinfra

    node = NodePlan("here", "127.0.0.1", ("postgres", "etcd"), ())
    plan = Plan("Here", "here", (node,), ())
    checks = _node_checks(testinfra.get_host("local://"), node, plan, {"base", "data"})
    assert {c.name for c in checks} >= {"patroni running and enabled", "port 8008 (postgres)"}
    for c in checks:
        assert c.expected, c
        line = c.line()
        assert not re.search(r"object at 0x|CommandResult\(|\[\]|\['", line), line
        if not c.passed:
            assert line == f"here: {c.name}: expected {c.expected}, seen {c.detail}"
    patroni = next(c for c in checks if c.name == "patroni running and enabled")
    if not patroni.passed:
        assert patroni.expected == "running and enabled"
        assert patroni.detail in ("stopped and disabled", "stopped and enabled")
