"""The site model on good files: what is accepted, the defaults, and where keys sit."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from hzcloud.errors import Problem, SiteError
from hzcloud.model import MAX_SERVERS, Role, Site, load_site, parse_site, site_file
from hzcloud.siteyaml import load_yaml_bytes

ROOT = Path(__file__).resolve().parents[2]
LAB_SITE = ROOT / "inventories" / "lab" / "site.yaml"
SAMPLE_SITE = ROOT / "inventories" / "sample-hospital" / "site.yaml"

MINIMAL = """\
hospital: {name: Clinic, code: clinic}
servers:
  - {name: c-1, address: 10.0.0.1, disks: [/dev/sdb]}
  - {name: c-2, address: 10.0.0.2, disks: [/dev/sdb]}
  - {name: c-3, address: 10.0.0.254, disks: [/dev/sdb]}
networks:
  management: 10.0.0.0/24
"""


def parse(text: str) -> Site:
    return parse_site(load_yaml_bytes(text.encode(), "site.yaml"))


def problems(text: str) -> list[str]:
    with pytest.raises(SiteError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_the_examples_are_valid() -> None:
    lab, sample = load_site(LAB_SITE), load_site(SAMPLE_SITE)
    assert [s.name for s in lab.servers] == [f"lab-0{i}" for i in range(1, 9)]
    assert lab.servers[7].roles == [Role.GATEWAY]
    assert lab.cloud.tenants == []  # tests/lab/test_cloud.py gives it one
    assert lab.bundle.services == ["patient-index", "codes", "records", "orders", "imaging"]
    assert sample.ssh.user == "hzadmin"
    assert sample.networks.ntp == ["10.20.0.1"]
    assert len(sample.storage_servers) == 4


def test_a_folder_or_its_site_yaml_name_the_same_site(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(MINIMAL)
    assert site_file(tmp_path) == tmp_path / "site.yaml"
    assert site_file(tmp_path / "site.yaml") == tmp_path / "site.yaml"
    assert load_site(tmp_path) == load_site(tmp_path / "site.yaml")


def test_defaults_fill_everything_optional() -> None:
    site = parse(MINIMAL)
    assert (site.ssh.user, site.ssh.key, site.ssh.port) == ("root", "~/.ssh/id_ed25519", 22)
    assert site.networks.pod_cidr == IPv4Network("10.42.0.0/16")
    assert site.networks.service_cidr == IPv4Network("10.43.0.0/16")
    assert site.networks.postgres_vip is None
    ceph = site.services.ceph
    assert (ceph.enabled, ceph.replicas, ceph.min_size, ceph.mons) == (True, 3, 2, 3)
    assert site.services.postgres.version == 15
    assert site.services.kubernetes.version == "v1.37.2"
    assert site.cloud.tenants == []
    assert site.bundle.services == []  # a bundle phase only where services are listed


def test_the_site_is_frozen() -> None:
    site = parse(MINIMAL)
    with pytest.raises(ValueError):
        site.hospital.code = "other"  # type: ignore[misc]


def test_enabled_follows_the_services() -> None:
    site = parse(MINIMAL + "services:\n  redis: {enabled: false}\n")
    assert not site.enabled(Role.REDIS)
    assert not site.enabled(Role.REDIS_SENTINEL)
    assert site.enabled(Role.POSTGRES)
    assert site.enabled(Role.GATEWAY)


def test_the_limits_themselves_are_accepted() -> None:
    servers = "".join(
        f"  - {{name: n-{i}, address: 10.0.{i // 200}.{i % 200 + 1}, disks: [/dev/sdb]}}\n"
        for i in range(MAX_SERVERS)
    )
    site = parse(
        "hospital: {name: Big, code: big}\nservers:\n"
        + servers
        + "networks: {management: 10.0.0.0/16}\n"
        + "services:\n  ceph: {replicas: 7, min_size: 7, mons: 7}\n"
    )
    assert len(site.servers) == MAX_SERVERS


def test_without_ceph_no_disks_are_needed() -> None:
    text = MINIMAL.replace(", disks: [/dev/sdb]", "") + "services:\n  ceph: {enabled: false}\n"
    assert parse(text).storage_servers == []


def test_a_single_monitor_and_copy_are_allowed() -> None:
    site = parse(MINIMAL + "services:\n  ceph: {replicas: 1, min_size: 1, mons: 1}\n")
    assert site.services.ceph.mons == 1


def test_strings_that_look_like_other_types_are_read_as_yaml_reads_them() -> None:
    # `port: "22"` is a string in YAML; pydantic's lax mode accepts it as the number it spells.
    site = parse(MINIMAL + 'ssh: {port: "2222"}\n')
    assert site.ssh.port == 2222


def test_a_vip_at_the_top_of_the_network_is_usable() -> None:
    text = MINIMAL.replace(
        "management: 10.0.0.0/24", "management: 10.0.0.0/24\n  postgres_vip: 10.0.0.253"
    )
    assert parse(text).networks.postgres_vip == IPv4Address("10.0.0.253")


def test_every_problem_is_listed_once_in_file_order_of_rules() -> None:
    text = MINIMAL.replace("c-2", "c-1").replace("10.0.0.254", "10.0.0.1")
    assert problems(text) == [
        "site.yaml:4 servers[1].name: name 'c-1' is already used by servers[0] "
        "(fix: give every server its own name)",
        "site.yaml:5 servers[2].address: address 10.0.0.1 is already used by servers[0] "
        "(fix: give every server its own address)",
    ]


def test_the_line_of_every_key_path_is_known() -> None:
    loaded = load_yaml_bytes(MINIMAL.encode(), "site.yaml")
    assert loaded.lines[("hospital", "code")] == 1
    assert loaded.lines[("servers", 2, "address")] == 5
    assert loaded.lines[("networks", "management")] == 7


def test_a_problem_prints_as_file_line_key_what_fix() -> None:
    p = Problem("site.yaml", 14, "services.ceph.mons", "must be odd (got 2)", "use 3 or 5")
    assert str(p) == "site.yaml:14 services.ceph.mons: must be odd (got 2) (fix: use 3 or 5)"
    assert str(Problem("x.yaml", None, "", "file is empty", "add keys")) == (
        "x.yaml file is empty (fix: add keys)"
    )


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("srv-01", True),
        ("x" * 63, True),
        ("x" * 64, False),
        ("-srv", False),
        ("srv-", False),
        ("Srv", False),
        ("srv.local", False),
    ],
)
def test_server_names_are_hostnames(name: str, ok: bool) -> None:
    text = MINIMAL.replace("name: c-1", f"name: {name}")
    if ok:
        assert parse(text).servers[0].name == name
    else:
        assert problems(text)[0].startswith(f"site.yaml:3 servers[0].name: invalid value '{name}'")
