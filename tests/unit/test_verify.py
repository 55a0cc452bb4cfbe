"""Pure parts of `hzcloud verify`: how a Ceph status is told."""

from __future__ import annotations

from hzcloud.verify import _ceph_health


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
