"""The site linked to its emulated public-cloud tenant, and disaster recovery proven through it.

Runs on the shared lab after test_site.py: the test gives the lab's site a tenant (the main lab
has none, so the other suites run without one) and, where the site has Ceph, a bucket it marks
for copying (`sync_buckets`, made here with a few objects), boots the gateway again (its cloud
interface is made at boot: a power cut of the gateway), lets `lab up` start the tenant (moto
behind TLS and a WireGuard endpoint in the tenant namespace), then `hzcloud up --only
data,cloud`: the bucket and user by Pulumi, the link and the backups by Ansible. Then: again
with 0 changed, every layer backed up now (PostgreSQL full, each etcd's snapshot, each bucket)
and listed by `backup status`, writes past the full backup, the tunnel down while WAL piles up
and back (it catches up), a restore drill of every layer that must bring back every row, each
etcd's keys and each bucket's objects, a point-in-time restore, and the tenant's API down: the
cloud phase fails alone, `data` still converges, `backup status` says why.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hzrun
import pytest
import yaml

from hzcloud import backup, cloudlink, lab
from hzcloud.lab import tenant as lab_tenant
from hzcloud.lab.provider import _load
from hzcloud.model import Role, load_site
from hzcloud.plan import plan_site

pytestmark = pytest.mark.lab

HZ = [sys.executable, "-m", "hzcloud"]


def hz_json(*args: str, timeout: float = 1800) -> tuple[int, dict[str, Any]]:
    res = subprocess.run([*HZ, *args], capture_output=True, text=True, timeout=timeout)
    try:
        return res.returncode, json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"hzcloud {' '.join(args)} gave no JSON (rc {res.returncode}):\n{res.stderr}")


def _tenant_entry(site: dict[str, Any]) -> dict[str, Any]:
    """A tenant whose networks are derived from the management network's (10.77 -> 10.177,
    10.178), so labs of other sites on the host never share them."""
    second = ipaddress.ip_network(site["networks"]["management"]).network_address.packed[1]
    code = site["hospital"]["code"]
    return {
        "name": "dr",
        "provider": "s3-compatible",
        "region": "eu-west-2",
        "endpoint": f"10.{(second + 100) % 256}.0.1",
        "api": f"https://s3.dr.{code}.lab",
        "credentials": "tenant_dr",
        "subnet": f"10.{(second + 101) % 256}.0.0/24",
    }


MARKED_BUCKET = "hz-dr-marked"


def _fill_marked_buckets(site: Path, buckets: list[str]) -> None:
    """The buckets the site marks hold something (as a service would have written them)."""
    import boto3

    loaded = load_site(site)
    rgw = plan_site(loaded).hosts(Role.CEPH_RGW)[0]
    keys = yaml.safe_load((site / "ceph" / "s3-hzcloud.yml").read_text())
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{rgw.address}:7480",
        aws_access_key_id=keys["access_key"],
        aws_secret_access_key=keys["secret_key"],
        region_name="default",
    )
    have = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for name in buckets:
        if name not in have:
            s3.create_bucket(Bucket=name)
        for i in range(20):
            s3.put_object(Bucket=name, Key=f"results/{i:03}.txt", Body=os.urandom(10_000))


def _add_operator_keys(site: Path) -> None:
    """What the operator copies from the cloud's console into secrets.yaml (mode 0600)."""
    access, secret = lab_tenant.operator_keys(site)
    path = site / "secrets.yaml"
    values = yaml.safe_load(path.read_text())
    values |= {"tenant_dr_access_key": access, "tenant_dr_secret_key": secret}
    fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(yaml.safe_dump(values))
    os.replace(f"{path}.tmp", path)


@pytest.fixture(scope="module")
def tenant_site(converged_site: dict[str, Any], site_artifacts: Path) -> dict[str, Any]:
    site = Path(converged_site["site"])
    spec = yaml.safe_load((site / "site.yaml").read_text())
    if not spec.get("cloud", {}).get("tenants"):
        entry = _tenant_entry(spec)
        if spec.get("services", {}).get("ceph", {}).get("enabled", True):
            entry["sync_buckets"] = [MARKED_BUCKET]
        spec["cloud"] = {"tenants": [entry]}
        (site / "site.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    marked = spec["cloud"]["tenants"][0].get("sync_buckets") or []
    if marked:
        _fill_marked_buckets(site, marked)
    names, _ = _load(site)
    gateway = names.spec.gateway
    assert gateway is not None, "the lab site pins a gateway"
    t0 = time.monotonic()
    lab.kill(site, gateway.name)  # its cloud interface comes with the next boot
    lab.up(site)
    booted = time.monotonic() - t0
    _add_operator_keys(site)
    t0 = time.monotonic()
    _rc, first = hzrun.up_json(site, "data,cloud")
    first_seconds = time.monotonic() - t0
    print(f"\ntenant + gateway boot {booted:.1f} s; data,cloud up {first_seconds:.0f} s")
    return {
        "site": site,
        "gateway": gateway.name,
        "first": first,
        "net": lab_tenant.tenant_net(names.spec),
        "netns": names.tenant_netns,
    }


def phase(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in data["phases"] if p["name"] == name)


def test_the_link_is_up_and_carries_only_the_tenant_subnet(tenant_site: dict[str, Any]) -> None:
    site, gw, net = tenant_site["site"], tenant_site["gateway"], tenant_site["net"]
    iface = cloudlink.site_interface("dr")
    shake = hzrun.node_run(site, gw, f"wg show {iface} latest-handshakes")
    assert shake.returncode == 0 and int(shake.stdout.split()[1]) > 0, shake.stdout + shake.stderr
    routes = hzrun.node_run(site, gw, "ip -j route")
    dests = {r["dst"] for r in json.loads(routes.stdout)}
    assert "default" not in dests and net.subnet in dests, dests
    client = next(n for n in _postgres_nodes(site) if n != gw)
    for node in (client, gw):  # a backup client through the gateway, and the gateway
        probe = f"timeout 5 python3 -c \"import socket; socket.create_connection(('{net.api_address}', 443))\""
        assert hzrun.node_run(site, node, probe).returncode == 0, node
    # nothing else crosses: the tenant's endpoint side of the tunnel is not open to the site
    ssh_probe = f"timeout 5 python3 -c \"import socket; socket.create_connection(('{net.tunnel.tenant}', 22), timeout=3)\""
    assert hzrun.node_run(site, client, ssh_probe).returncode != 0


def test_the_site_key_stays_private(tenant_site: dict[str, Any]) -> None:
    site = tenant_site["site"]
    assert cloudlink.site_key_path(site, "dr").stat().st_mode & 0o077 == 0
    rendered = site / "state" / "group_vars" / "all" / "cloud_link.yml"
    assert rendered.stat().st_mode & 0o077 == 0
    log = json.dumps(tenant_site["first"])
    assert cloudlink.site_key_path(site, "dr").read_text().strip() not in log
    assert cloudlink.rgw_reader_key_path(site).stat().st_mode & 0o077 == 0
    for node in {h for layer in _dr_layers(site) for h in layer.hosts}:
        mode = hzrun.node_run(site, node, "stat -c %a /etc/hzcloud/rclone.conf").stdout.strip()
        assert mode == "600", (node, mode)  # the tenant's keys and the crypt pass are in it


def test_cloud_again_changes_nothing(tenant_site: dict[str, Any]) -> None:
    _rc, again = hzrun.up_json(tenant_site["site"], "cloud")
    cloud = phase(again, "cloud")
    print(f"\ncloud again: {cloud['seconds']} s, {cloud['changed']} changed")
    assert cloud["changed"] == 0, json.dumps(cloud, indent=2)


def _sql(site: Path, node: str, query: str) -> str:
    res = hzrun.node_run(site, node, f'runuser -u postgres -- psql -XAtq -c "{query}"')
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _postgres_nodes(site: Path) -> list[str]:
    loaded = load_site(site)
    return [n.name for n in plan_site(loaded).hosts(Role.POSTGRES)]


def _dr_layers(site: Path) -> tuple[backup.DrLayer, ...]:
    loaded = load_site(site)
    return backup.dr_layers(loaded, plan_site(loaded), site)


def _layer_names(site: Path) -> list[str]:
    return ["postgres", "postgres-wal", *(x.name for x in _dr_layers(site))]


def test_every_layer_is_backed_up_now_and_listed(tenant_site: dict[str, Any]) -> None:
    site = tenant_site["site"]
    t0 = time.monotonic()
    rc, done = hz_json("backup", str(site), "--now", "--type", "full", "--output", "json")
    print(f"\nevery layer now {time.monotonic() - t0:.0f} s: {done['layers']}")
    assert rc == 0 and done["ok"], done
    names = {x["name"] for x in done["layers"]}
    assert names == {"postgres", *(x.name for x in _dr_layers(site))}, names
    assert any(x.kind == "etcd" for x in _dr_layers(site)), "Patroni's etcd at least"
    rc, status = hz_json("backup", "status", str(site), "--output", "json")
    assert rc == 0
    layers = {layer["name"]: layer for layer in status["layers"]}
    assert list(layers) == _layer_names(site)
    for layer in layers.values():
        assert layer["last_good"] and layer["age_seconds"] < 600, layer
        assert layer["error"] == "" and layer["target"].startswith("s3://"), layer
    # the tenant holds them encrypted: nothing of a bucket's objects is readable there
    bucket = next((x for x in _dr_layers(site) if x.kind == "bucket"), None)
    if bucket is not None:
        keys = _tenant_objects(site, f"hzcloud/{load_site(site).hospital.code}/dr/buckets/")
        assert keys and all(k.endswith(".bin") for k in keys), keys[:5]


def _tenant_objects(site: Path, prefix: str) -> list[str]:
    """Object names in the tenant's backup bucket (as the operator's console shows them)."""
    import boto3

    access, secret = lab_tenant.operator_keys(site)
    names, _ = _load(site)
    net = lab_tenant.tenant_net(names.spec)
    s3 = boto3.client(
        "s3",
        endpoint_url=f"https://{net.api_host}",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="eu-west-2",
        verify=str(site / "state" / "lab" / "tenant" / "ca.crt"),
    )
    bucket = load_site(site).cloud.tenants[0].bucket_name(load_site(site).hospital.code)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _leader(site: Path) -> str:
    for node in _postgres_nodes(site):
        res = hzrun.node_run(
            site, node, "runuser -u postgres -- psql -XAtqc 'select pg_is_in_recovery()'"
        )
        if res.returncode == 0 and res.stdout.strip() == "f":
            return node
    pytest.fail("no PostgreSQL leader found")


def test_writes_past_the_full_backup_survive_a_tunnel_outage_and_come_back(
    tenant_site: dict[str, Any],
) -> None:
    site, gw = tenant_site["site"], tenant_site["gateway"]
    leader = _leader(site)
    _sql(site, leader, "create table if not exists dr_rows (id serial primary key, v text)")
    _sql(site, leader, "insert into dr_rows (v) select 'after backup' from generate_series(1, 100)")
    iface = cloudlink.site_interface("dr")
    failed = "select failed_count from pg_stat_archiver"
    before = int(_sql(site, leader, failed))
    assert hzrun.node_run(site, gw, f"systemctl stop wg-quick@{iface}").returncode == 0
    try:
        _sql(
            site,
            leader,
            "insert into dr_rows (v) select 'tunnel down' from generate_series(1, 100)",
        )
        waiting = _sql(site, leader, "select pg_walfile_name(pg_current_wal_lsn())")
        _sql(site, leader, "select pg_switch_wal()")
        deadline = time.monotonic() + 150
        while int(_sql(site, leader, failed)) == before:
            assert time.monotonic() < deadline, "the archiver never tried while the tunnel was down"
            time.sleep(2)
        queued = _sql(
            site, leader, "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'"
        )
        assert int(queued) >= 1, "the segment waits in pg_wal"
        rc, status = hz_json("backup", "status", str(site), "--output", "json", timeout=600)
        wal = next(x for x in status["layers"] if x["name"] == "postgres-wal")
        print(f"\nstatus while the tunnel is down: {wal}")
        assert wal["error"], "status says why the WAL is not in the tenant"
    finally:
        assert hzrun.node_run(site, gw, f"systemctl start wg-quick@{iface}").returncode == 0
    t0 = time.monotonic()
    archived = "select coalesce(last_archived_wal, '') from pg_stat_archiver"
    while _sql(site, leader, archived) < waiting:
        assert time.monotonic() - t0 < 300, "WAL archiving did not catch up after the outage"
        time.sleep(2)
    print(f"\nWAL archiving caught up {time.monotonic() - t0:.0f} s after the tunnel came back")
    t0 = time.monotonic()
    rc, drill = hz_json("restore", str(site), "--drill", "--output", "json")
    print(f"\nrestore drill {time.monotonic() - t0:.0f} s: {json.dumps(drill, indent=1)}")
    assert rc == 0 and drill["passed"], drill
    assert [x["name"] for x in drill["layers"]] == [
        n for n in _layer_names(site) if n != "postgres-wal"
    ]
    pg = drill["layers"][0]
    assert pg["name"] == "postgres" and pg["rpo_seconds"] is not None
    assert "tables compared" in pg["detail"] and "differ" not in pg["detail"]
    for layer in drill["layers"][1:]:
        assert layer["passed"] and layer["rpo_seconds"] is not None, layer
        assert ("marker found" in layer["detail"]) or ("check matched" in layer["detail"]), layer


def test_point_in_time_restore_brings_back_the_rows_before_and_none_after(
    tenant_site: dict[str, Any],
) -> None:
    site = tenant_site["site"]
    leader = _leader(site)
    _sql(
        site,
        leader,
        "create table if not exists hzcloud_restore_drill (id bigserial primary key,"
        " at timestamptz not null default clock_timestamp(), note text not null)",
    )
    _sql(
        site,
        leader,
        "insert into hzcloud_restore_drill (note) select 'before' from generate_series(1, 5)",
    )
    time.sleep(2)
    # the leader's clock, as UTC ISO 8601 (the shell line holds no double quotes)
    now = "select to_char(clock_timestamp() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US')"
    to = _sql(site, leader, now).replace(" ", "T") + "Z"
    time.sleep(2)
    _sql(
        site,
        leader,
        "insert into hzcloud_restore_drill (note) select 'after' from generate_series(1, 7)",
    )
    t0 = time.monotonic()
    rc, drill = hz_json("restore", str(site), "--drill", "--to", to, "--output", "json")
    print(f"\npoint-in-time drill {time.monotonic() - t0:.0f} s: {drill}")
    assert rc == 0 and drill["passed"], drill
    (pg,) = drill["layers"]
    # every drill-table row up to the time is back (5 and earlier drills' markers), none after
    # it (the 7, and the drill's own marker)
    assert "rows after it 0/8 back" in pg["detail"], pg
    before = pg["detail"].split("rows up to it ")[1].split(" ")[0]
    assert before.split("/")[0] == before.split("/")[1] and int(before.split("/")[0]) >= 5


def test_an_unreachable_tenant_fails_the_cloud_phase_alone(tenant_site: dict[str, Any]) -> None:
    site = tenant_site["site"]
    state = json.loads((site / "state" / "lab" / "lab.json").read_text())
    pid = state["tenant"]["stunnel_pid"]
    subprocess.run(["kill", str(pid)], check=False)  # the tenant's API goes away
    try:
        rc, data = hzrun.up_json(site, "data,cloud", expect_ok=False)
        assert rc == 1
        cloud = phase(data, "cloud")
        assert cloud["status"] == "failed", cloud
        assert phase(data, "data")["status"] == "ok", "the other phases are not held up"
        rc, status = hz_json("status", str(site), "--output", "json")
        text = json.dumps(status)
        assert "cloud" in text and "failed" in text
        t0 = time.monotonic()
        rc, backups = hz_json("backup", "status", str(site), "--output", "json", timeout=600)
        print(f"\nbackup status with the tenant down ({time.monotonic() - t0:.0f} s): {backups}")
        assert rc == 0
        assert [x["name"] for x in backups["layers"]] == _layer_names(site)
        for layer in backups["layers"]:
            if layer["name"] != "postgres-wal":  # its last push may still be the newest
                assert layer["error"], layer
    finally:
        lab.up(site)  # starts the API again
    # only verify and the bundle (its services' buckets) wait for the cloud phase
    from hzcloud.phases import REGISTRY

    assert {p.name for p in REGISTRY if "cloud" in p.depends_on} <= {"verify", "bundle"}
