"""The storage phase for real on the lab: Ceph health, RBD, RGW (S3) and the loss of an OSD server."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hzcloud.executors.ansible import run_ansible
from hzcloud.outcome import PhaseResult

pytestmark = pytest.mark.lab

HEAL_TIMEOUT = 300.0


def inventory(site: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((site / "state" / "inventory.yml").read_text())["all"])


def group(site: Path, name: str) -> list[str]:
    return list(inventory(site)["children"][name]["hosts"] or {})


def address(site: Path, host: str) -> str:
    return str(inventory(site)["hosts"][host]["ansible_host"])


def on(
    site: Path, host: str, command: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a node as Ansible reaches it (key and pinned host keys of state/)."""
    inv = inventory(site)
    argv = [
        "ssh", "-F", "none",
        "-i", str(inv["vars"]["ansible_ssh_private_key_file"]),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        "-o", f"UserKnownHostsFile={site / 'state' / 'known_hosts'}",
        "-p", str(inv["vars"]["ansible_port"]),
        f"{inv['vars']['ansible_user']}@{address(site, host)}",
        command,
    ]  # fmt: skip
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def ceph_json(site: Path, args: str) -> Any:
    res = on(site, group(site, "ceph_mon")[0], f"ceph --connect-timeout 20 {args} --format json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll check() until it holds; return the seconds it took."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(2)
    return time.monotonic() - t0


def healthy(site: Path) -> bool:
    """HEALTH_OK, every PG active+clean (HEALTH_OK alone can hide inactive PGs)."""
    status = ceph_json(site, "status")
    pgs = status["pgmap"]
    clean = sum(
        s["count"] for s in pgs.get("pgs_by_state", []) if s["state_name"] == "active+clean"
    )
    return bool(
        status["health"]["status"] == "HEALTH_OK" and pgs["num_pgs"] > 0 and clean == pgs["num_pgs"]
    )


def s3(site: Path, host: str) -> Any:
    import boto3  # test extra; only these tests need it
    from botocore.config import Config

    keys = yaml.safe_load((site / "ceph" / "s3-hzcloud.yml").read_text())
    return boto3.client(
        "s3",
        endpoint_url=f"http://{address(site, host)}:7480",
        aws_access_key_id=keys["access_key"],
        aws_secret_access_key=keys["secret_key"],
        region_name="default",
        config=Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=60),
    )


def s3_roundtrip(site: Path, host: str, size: int = 1 << 20) -> None:
    client = s3(site, host)
    bucket = f"hz-test-{uuid.uuid4().hex[:8]}"
    body = uuid.uuid4().bytes * (size // 16)
    client.create_bucket(Bucket=bucket)
    try:
        client.put_object(Bucket=bucket, Key="blob", Body=body)
        assert client.get_object(Bucket=bucket, Key="blob")["Body"].read() == body
    finally:
        client.delete_object(Bucket=bucket, Key="blob")
        client.delete_bucket(Bucket=bucket)


def rbd_roundtrip(site: Path) -> None:
    image = f"kubernetes/hz-test-{uuid.uuid4().hex[:8]}"
    script = (
        f"set -e; rbd create {image} --size 64M; "
        f"trap 'rbd rm --no-progress {image}' EXIT; "
        f"rbd bench --io-type write --io-size 4K --io-total 4M {image} >/dev/null; "
        f"rbd bench --io-type read --io-size 4K --io-total 4M {image} >/dev/null; "
        f"rados -p kubernetes put hz-probe /etc/os-release; "
        f"rados -p kubernetes get hz-probe - | cmp - /etc/os-release; rados -p kubernetes rm hz-probe"
    )
    res = on(site, group(site, "ceph_mon")[0], script, timeout=180)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def storage_site(lab_site: Path) -> Iterator[Path]:
    """The lab with the storage phase applied by this module (ansible-runner, as `hzcloud up`)."""
    result = run_ansible("storage", lab_site / "state", lambda _e: None)
    assert result.ok, result.failures
    print(f"\nstorage phase: {result.seconds:.1f}s, {result.changed} changed")
    wait_for(lambda: healthy(lab_site), HEAL_TIMEOUT, "HEALTH_OK with all PGs active+clean")
    yield lab_site


def test_storage_rerun_changes_nothing(storage_site: Path) -> None:
    result: PhaseResult = run_ansible("storage", storage_site / "state", lambda _e: None)
    assert result.ok, result.failures
    print(f"\nconverged storage phase: {result.seconds:.1f}s")
    assert result.changed == 0, result.hosts


def test_mons_in_quorum_and_every_disk_is_an_up_osd(storage_site: Path) -> None:
    quorum = ceph_json(storage_site, "quorum_status")
    assert sorted(quorum["quorum_names"]) == sorted(group(storage_site, "ceph_mon"))
    disks = sum(
        len(inventory(storage_site)["hosts"][h]["hz_disks"])
        for h in group(storage_site, "ceph_osd")
    )
    osds = ceph_json(storage_site, "osd stat")
    assert (osds["num_osds"], osds["num_up_osds"], osds["num_in_osds"]) == (disks, disks, disks)
    tree = ceph_json(storage_site, "osd tree")
    hosts = {n["name"] for n in tree["nodes"] if n["type"] == "host" and n.get("children")}
    assert hosts == {
        h
        for h in group(storage_site, "ceph_osd")
        if inventory(storage_site)["hosts"][h]["hz_disks"]
    }
    assert healthy(storage_site)


def test_pools_follow_the_plan(storage_site: Path) -> None:
    plan = yaml.safe_load((storage_site / "state/group_vars/all/ceph.yml").read_text())
    pools = ceph_json(storage_site, "osd pool ls detail")
    assert "kubernetes" in {p["pool_name"] for p in pools}
    assert {(p["size"], p["min_size"]) for p in pools} == {
        (plan["ceph_replicas"], plan["ceph_min_size"])
    }
    rules = {r["rule_id"]: r for r in ceph_json(storage_site, "osd crush rule dump")}
    for pool in pools:
        steps = rules[pool["crush_rule"]]["steps"]
        assert any(s.get("type") == "host" for s in steps if s["op"].startswith("choose")), steps


def test_keys_are_kept_private_in_the_site_folder(storage_site: Path) -> None:
    folder = storage_site / "ceph"
    assert folder.stat().st_mode & 0o777 == 0o700
    names = {p.name for p in folder.iterdir()}
    assert {"ceph.client.admin.keyring", "ceph.mon.keyring", "ceph.client.bootstrap-osd.keyring",
            "s3-hzcloud.yml"} <= names  # fmt: skip
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.iterdir())


def test_rbd_write_and_read(storage_site: Path) -> None:
    rbd_roundtrip(storage_site)


@pytest.mark.parametrize("gateway", [0, 1])
def test_s3_put_and_get_on_each_gateway(storage_site: Path, gateway: int) -> None:
    gateways = group(storage_site, "ceph_rgw")
    if gateway >= len(gateways):
        pytest.skip("fewer gateways in this plan")
    s3_roundtrip(storage_site, gateways[gateway], size=8 << 20)


def test_losing_an_osd_server_keeps_data_available(storage_site: Path) -> None:
    mons = set(group(storage_site, "ceph_mon"))
    candidates = [h for h in group(storage_site, "ceph_osd") if h not in mons] or group(
        storage_site, "ceph_osd"
    )
    victim = candidates[0]
    total = ceph_json(storage_site, "osd stat")["num_osds"]
    lost = len(inventory(storage_site)["hosts"][victim]["hz_disks"])
    res = on(storage_site, victim, "systemctl stop ceph-osd.target")
    assert res.returncode == 0, res.stderr
    try:
        wait_for(lambda: ceph_json(storage_site, "osd stat")["num_up_osds"] == total - lost, 120,
                 f"{victim}'s OSDs marked down")  # fmt: skip
        rbd_roundtrip(storage_site)
        s3_roundtrip(storage_site, group(storage_site, "ceph_rgw")[0])
    finally:
        res = on(storage_site, victim, "systemctl start ceph-osd.target")
    assert res.returncode == 0, res.stderr
    took = wait_for(
        lambda: healthy(storage_site), HEAL_TIMEOUT, f"HEALTH_OK after {victim} came back"
    )
    print(
        f"\nback to HEALTH_OK and all PGs active+clean {took:.0f}s after restarting {victim}'s OSDs"
    )
