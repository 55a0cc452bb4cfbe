"""The site linked to its emulated public-cloud tenant, and disaster recovery proven through it.

Runs on the shared lab after test_site.py: the test gives the lab's site a tenant (the main lab
has none, so the other suites run without one), boots the gateway again (its cloud interface
is made at boot: a power cut of the gateway), lets `lab up` start the tenant (moto behind TLS
and a WireGuard endpoint in the tenant namespace), then `hzcloud up --only data,cloud`: the
bucket and user by Pulumi, the link and the backups by Ansible. Then: again with 0 changed,
a full backup, writes past it, the tunnel down while WAL piles up and back, and a restore
drill that must bring back every row; the tenant's API down fails the cloud phase alone.
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

from hzcloud import cloudlink, lab
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
        spec["cloud"] = {"tenants": [_tenant_entry(spec)]}
        (site / "site.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
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


def _leader(site: Path) -> str:
    for node in _postgres_nodes(site):
        res = hzrun.node_run(
            site, node, "runuser -u postgres -- psql -XAtqc 'select pg_is_in_recovery()'"
        )
        if res.returncode == 0 and res.stdout.strip() == "f":
            return node
    pytest.fail("no PostgreSQL leader found")


def test_backup_then_writes_survive_a_tunnel_outage_and_come_back(
    tenant_site: dict[str, Any],
) -> None:
    site, gw = tenant_site["site"], tenant_site["gateway"]
    t0 = time.monotonic()
    rc, done = hz_json("backup", str(site), "--now", "--type", "full", "--output", "json")
    assert rc == 0, done
    print(f"\nfull backup {time.monotonic() - t0:.0f} s on {done['node']}")
    rc, status = hz_json("backup", "status", str(site), "--output", "json")
    assert rc == 0
    layers = {layer["name"]: layer for layer in status["layers"]}
    assert layers["postgres"]["last_good"] and layers["postgres"]["age_seconds"] < 600

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
        _sql(site, leader, "select pg_switch_wal()")
        deadline = time.monotonic() + 150
        while int(_sql(site, leader, failed)) == before:
            assert time.monotonic() < deadline, "the archiver never tried while the tunnel was down"
            time.sleep(2)
    finally:
        assert hzrun.node_run(site, gw, f"systemctl start wg-quick@{iface}").returncode == 0
    t0 = time.monotonic()
    rc, drill = hz_json("restore", str(site), "--drill", "--output", "json")
    print(f"\nrestore drill {time.monotonic() - t0:.0f} s: {drill}")
    assert rc == 0 and drill["passed"], drill
    (pg,) = drill["layers"]
    assert pg["name"] == "postgres" and pg["rpo_seconds"] is not None


def test_an_unreachable_tenant_fails_the_cloud_phase_alone(tenant_site: dict[str, Any]) -> None:
    site = tenant_site["site"]
    state = json.loads((site / "state" / "lab" / "lab.json").read_text())
    pid = state["tenant"]["stunnel_pid"]
    subprocess.run(["kill", str(pid)], check=False)  # the tenant's API goes away
    try:
        rc, data = hzrun.up_json(site, "cloud", expect_ok=False)
        assert rc == 1
        cloud = phase(data, "cloud")
        assert cloud["status"] == "failed", cloud
        rc, status = hz_json("status", str(site), "--output", "json")
        text = json.dumps(status)
        assert "cloud" in text and "failed" in text
    finally:
        lab.up(site)  # starts the API again
    # only verify and the bundle (its services' buckets) wait for the cloud phase
    from hzcloud.phases import REGISTRY

    assert {p.name for p in REGISTRY if "cloud" in p.depends_on} <= {"verify", "bundle"}
