"""The tenant link's derivations, key files, the cloud phase's playbook facts, backup status
from a recorded answer, and the backup/restore commands' refusals: all without a lab."""

from __future__ import annotations

import json
import py_compile
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from hzcloud import backup, cloudlink
from hzcloud.errors import HzError
from hzcloud.lab.spec import LabServer, LabSpec, LabTenant
from hzcloud.lab.tenant import tenant_net
from hzcloud.model import load_site
from hzcloud.phases import cloud
from hzcloud.plan import plan_site
from hzcloud.resources import resource

if TYPE_CHECKING:
    from conftest import Hz


def lab_spec(code: str = "ten") -> LabSpec:
    servers = tuple(
        LabServer(f"{code}-0{i}", f"10.92.0.1{i}", (), ("gateway",) if i == 3 else ())
        for i in (1, 2, 3)
    )
    tenant = LabTenant("dr", "10.192.0.1", "10.193.0.0/24", f"https://s3.dr.{code}.lab")
    return LabSpec(code, servers, "10.92.0.0/24", None, tenant, "root", "keys/id_ed25519")


def test_both_ends_of_the_tunnel_are_derived_from_the_subnet() -> None:
    t = cloudlink.tunnel_addresses("10.193.0.0/24")
    assert (t.tenant, t.gateway, t.prefix) == ("10.193.0.1", "10.193.0.2", 24)
    assert cloudlink.tunnel_addresses("10.193.0.0/24", 1).gateway == "10.193.0.3"


def test_the_lab_tenant_lives_behind_a_public_net_of_its_own() -> None:
    net = tenant_net(lab_spec())
    assert str(net.public) == "10.192.0.0/24"
    assert net.gateway_public == "10.192.0.13"  # the gateway's last octet
    assert net.host not in (net.endpoint, net.gateway_public)
    assert net.api_address == "10.193.0.10"  # inside the subnet: only through the tunnel
    assert net.api_host == "s3.dr.ten.lab"
    assert net.tunnel.gateway == "10.193.0.2"


def test_endpoint_interfaces_are_distinct_per_lab_and_fit_linux() -> None:
    names = {cloudlink.endpoint_interface(code, "dr") for code in ("ten", "lab", "tena", "fla")}
    assert len(names) == 4
    assert all(len(n) <= 15 for n in names)
    assert len(cloudlink.site_interface("a-very-long-tenant-name")) <= 15


def test_the_public_key_is_wireguards() -> None:
    wg = shutil.which("wg")
    if wg is None:
        pytest.skip("wireguard-tools not installed on this host")
    private = cloudlink.new_private_key()
    expected = subprocess.run([wg, "pubkey"], input=private, capture_output=True, text=True)
    assert cloudlink.public_key(private) == expected.stdout.strip()


def test_the_site_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = cloudlink.ensure_site_key(tmp_path, "dr")
    path = cloudlink.site_key_path(tmp_path, "dr")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "cloud").stat().st_mode & 0o777 == 0o700
    assert cloudlink.ensure_site_key(tmp_path, "dr") == first
    cipher = cloudlink.ensure_repo_key(tmp_path, "dr")
    assert cloudlink.ensure_repo_key(tmp_path, "dr") == cipher and len(cipher) >= 32
    path.chmod(0o644)
    with pytest.raises(HzError, match="can be read by others"):
        cloudlink.ensure_site_key(tmp_path, "dr")


def _tenant_site(tmp_path: Path) -> Path:
    spec = yaml.safe_load((resource("inventories") / "lab" / "site.yaml").read_text())
    spec["cloud"] = {
        "tenants": [
            {
                "name": "dr",
                "provider": "s3-compatible",
                "region": "eu-west-2",
                "endpoint": "10.192.0.1",
                "api": "https://10.193.0.10",
                "subnet": "10.193.0.0/24",
            }
        ]
    }
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path


def test_the_playbook_gets_the_link_and_the_stack_outputs(tmp_path: Path) -> None:
    site_dir = _tenant_site(tmp_path)
    site = load_site(site_dir)
    cloudlink.endpoint_pub_path(site_dir, "dr").parent.mkdir(mode=0o700)
    cloudlink.endpoint_pub_path(site_dir, "dr").write_text("ENDPOINTPUB=\n")
    made = {"dr": {"bucket": "hz-lab-backup", "access_key_id": "AK", "secret_access_key": "SK"}}
    cloud._after_stack(site, plan_site(site), site_dir, made)
    path = site_dir / "state" / "group_vars" / "all" / cloud.LINK_VARS_FILE
    assert path.stat().st_mode & 0o777 == 0o600  # keys inside
    (t,) = yaml.safe_load(path.read_text())["cloud_link_tenants"]
    assert t["endpoint_public_key"] == "ENDPOINTPUB="
    assert t["private_key"] == cloudlink.site_key_path(site_dir, "dr").read_text().strip()
    assert (t["subnet"], t["address"], t["api_address"]) == (
        "10.193.0.0/24",
        "10.193.0.2",
        "10.193.0.10",
    )
    assert t["api_in_subnet"] is True
    assert (t["bucket"], t["access_key"], t["secret_key"]) == ("hz-lab-backup", "AK", "SK")


def _with_buckets(site_dir: Path, buckets: list[str], services: list[str]) -> Path:
    spec = yaml.safe_load((site_dir / "site.yaml").read_text())
    spec["cloud"]["tenants"][0]["sync_buckets"] = buckets
    spec["bundle"] = {"services": services}
    (site_dir / "site.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return site_dir


def test_every_layer_has_its_nodes_and_target(tmp_path: Path) -> None:
    site_dir = _with_buckets(_tenant_site(tmp_path), ["lab-results", "studies"], ["imaging"])
    site = load_site(site_dir)
    plan = plan_site(site)
    layers = {x.name: x for x in backup.dr_layers(site, plan, site_dir)}
    imaging = backup.bundle_buckets(site, site_dir)
    assert imaging, "the default bundle's imaging entry has a bucket"
    assert list(layers) == [
        "etcd-patroni",
        "etcd-kubernetes",
        *(f"bucket-{b}" for b in imaging),
        "bucket-lab-results",
        *(["bucket-studies"] if "studies" not in imaging else []),
    ]
    assert layers["etcd-patroni"].hosts == tuple(n.name for n in plan.hosts("etcd"))
    assert layers["etcd-kubernetes"].hosts == tuple(n.name for n in plan.hosts("k8s-server"))
    rgw = plan.hosts("ceph-rgw")[0].name
    assert all(x.hosts == (rgw,) for x in layers.values() if x.kind == "bucket")
    assert layers["bucket-lab-results"].target.startswith("s3://hz-lab-backup/hzcloud/lab/dr/")


def test_a_site_without_kubernetes_or_ceph_has_only_patronis_etcd(tmp_path: Path) -> None:
    site_dir = _tenant_site(tmp_path)
    spec = yaml.safe_load((site_dir / "site.yaml").read_text())
    spec["services"] = {"ceph": {"enabled": False}, "kubernetes": {"enabled": False}}
    spec.pop("bundle")  # its services need both
    (site_dir / "site.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    site = load_site(site_dir)
    assert [x.name for x in backup.dr_layers(site, plan_site(site), site_dir)] == ["etcd-patroni"]
    needs = [n.what for n in cloud.PHASE.needs(site, site_dir)]
    assert not any("etcdutl" in n for n in needs)


def test_the_dr_roles_get_layers_and_keys_made_once(tmp_path: Path) -> None:
    site_dir = _with_buckets(_tenant_site(tmp_path), ["lab-results"], [])
    site = load_site(site_dir)
    cloudlink.endpoint_pub_path(site_dir, "dr").parent.mkdir(mode=0o700)
    cloudlink.endpoint_pub_path(site_dir, "dr").write_text("ENDPOINTPUB=\n")
    first = cloud.link_vars(site, plan_site(site), site_dir, {})
    again = cloud.link_vars(site, plan_site(site), site_dir, {})
    assert first == again  # a converged site: the same facts, the same files on the nodes
    assert [x["name"] for x in first["dr_layers_list"]][-1] == "bucket-lab-results"
    key = cloudlink.rgw_reader_key_path(site_dir)
    assert key.stat().st_mode & 0o777 == 0o600
    assert f"{first['dr_layers_rgw_access_key']}:{first['dr_layers_rgw_secret_key']}" == (
        key.read_text().strip()
    )
    revealed = _rclone_reveal(first["dr_layers_crypt_password"])
    assert revealed == cloudlink.ensure_repo_key(site_dir, "dr")


def _rclone_reveal(obscured: str) -> str:
    """rclone reveal, or its published algorithm where rclone is not installed."""
    tool = shutil.which("rclone")
    if tool:
        res = subprocess.run([tool, "reveal", obscured], capture_output=True, text=True)
        return res.stdout.strip()
    import base64

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    raw = base64.urlsafe_b64decode(obscured + "=" * (-len(obscured) % 4))
    dec = Cipher(algorithms.AES(cloudlink._RCLONE_OBSCURE_KEY), modes.CTR(raw[:16])).decryptor()
    return (dec.update(raw[16:]) + dec.finalize()).decode()


def test_status_of_the_dr_layers_says_why_when_the_tenant_did_not_answer() -> None:
    answer = {
        "now": 1_800_000_100.0,
        "layers": [
            {"name": "etcd-patroni", "target": "t", "last_good": 1_800_000_000.0, "error": ""},
            {"name": "bucket-x", "target": "t", "last_good": None, "error": "tenant down"},
        ],
    }
    etcd, bucket = backup.dr_layers_from(answer)
    assert (etcd.age_seconds, etcd.error) == (100.0, "")
    assert (bucket.last_good, bucket.error) == (None, "tenant down")


def test_a_failed_wal_push_is_named_in_the_status() -> None:
    status = json.loads(json.dumps(RECORDED_STATUS))
    status["archiver"]["last_failed_time"] = 1_800_000_095.0
    _, wal = backup.layers_from(status, "x")
    assert "failed 5 s ago" in wal.error


def test_the_cloud_phase_needs_the_tenant_endpoints_key(tmp_path: Path) -> None:
    site_dir = _tenant_site(tmp_path)
    needs = cloud.PHASE.needs(load_site(site_dir), site_dir)
    missing = [n for n in needs if not n.met()]
    assert any("WireGuard public key" in n.what for n in missing)


RECORDED_STATUS: dict[str, Any] = {
    "leader": True,
    "now": 1_800_000_100.0,
    "info": [
        {
            "name": "lab-postgres",
            "status": {"code": 0},
            "backup": [
                {"label": "a", "timestamp": {"start": 1_799_999_000, "stop": 1_799_999_050}},
                {"label": "b", "timestamp": {"start": 1_800_000_000, "stop": 1_800_000_040}},
            ],
        }
    ],
    "archiver": {"last_archived_time": 1_800_000_090.0, "failed_count": 0},
}


def test_status_layers_come_from_the_newest_good_backup_and_wal() -> None:
    pg, wal = backup.layers_from(RECORDED_STATUS, "s3://b/p (dr)")
    assert (pg.name, pg.age_seconds, pg.last_good) == ("postgres", 60.0, "2027-01-15T08:00:40Z")
    assert (wal.name, wal.age_seconds) == ("postgres-wal", 10.0)
    assert set(pg.to_dict()) == {"name", "last_good", "age_seconds", "target", "error"}
    assert pg.error == wal.error == ""


def test_no_backup_yet_says_never() -> None:
    empty = {"now": 1.0, "info": [{"backup": []}], "archiver": {}}
    assert [layer.last_good for layer in backup.layers_from(empty, "x")] == [None, None]


def test_backup_of_a_site_without_tenant_is_refused(hz: Hz, lab_dir: Path) -> None:
    res = hz("backup", str(lab_dir), "--now")
    assert res.exit_code == 2, res.output
    assert "no cloud tenant" in res.output


def test_restore_without_drill_is_refused(hz: Hz, lab_dir: Path) -> None:
    res = hz("restore", str(lab_dir))
    assert res.exit_code == 2, res.output
    assert "hzcloud restore SITE --drill" in res.output


def test_a_restore_to_a_time_that_is_not_one_is_refused(hz: Hz, lab_dir: Path) -> None:
    res = hz("restore", str(lab_dir), "--drill", "--to", "yesterday")
    assert res.exit_code == 2, res.output
    assert "is not a time" in res.output


def test_the_node_backup_tools_compile(tmp_path: Path) -> None:
    for role, name in (("pg_backup", "hz-backup"), ("dr_layers", "hz-dr")):
        tool = resource("playbooks") / "roles" / role / "files" / name
        py_compile.compile(str(tool), cfile=str(tmp_path / f"{name}.pyc"), doraise=True)
    assert json.loads(json.dumps(RECORDED_STATUS))  # the shape the tool prints
