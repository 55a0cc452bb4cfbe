"""The planner: the example sites' placement, determinism, and invariants over random sites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hzcloud.model import QUORUM_SIZE, BundleService, Role, Site, load_site, parse_site
from hzcloud.plan import Plan, plan_site
from hzcloud.siteyaml import Loaded

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventories" / "lab" / "site.yaml"
SAMPLE = ROOT / "inventories" / "sample-hospital" / "site.yaml"

VOCABULARY = {str(r) for r in Role}
ALL_PHASES = (
    "preflight",
    "base",
    "storage",
    "data",
    "kubernetes",
    "ingress",
    "platform",
    "cloud",
    "bundle",
    "verify",
)


def members(plan: Plan, role: Role) -> set[str]:
    return {n.name for n in plan.hosts(role)}


# The lab: four servers with a disk, four without, the gateway pinned on the last.
LAB_PLACEMENT = {
    "lab-01": ("ceph-osd", "k8s-server"),
    "lab-02": ("ceph-osd", "k8s-server"),
    "lab-03": ("ceph-mon", "ceph-mgr", "ceph-osd", "redis", "redis-sentinel", "k8s-agent"),
    "lab-04": ("ceph-mon", "ceph-mgr", "ceph-osd", "redis", "redis-sentinel", "k8s-agent"),
    "lab-05": ("ceph-mon", "etcd", "postgres", "k8s-agent"),
    "lab-06": ("etcd", "postgres", "redis", "redis-sentinel", "k8s-agent"),
    "lab-07": ("ceph-rgw", "etcd", "postgres", "k8s-agent"),
    "lab-08": ("ceph-rgw", "k8s-server", "gateway"),
}

# The sample hospital: every service, a tenant and the bundle.
FULL_PHASES = [
    ("preflight", ()),
    ("base", ("preflight",)),
    ("storage", ("base",)),
    ("data", ("base",)),
    ("kubernetes", ("base",)),
    ("ingress", ("base",)),
    ("platform", ("kubernetes",)),
    ("cloud", ("base", "data", "storage", "kubernetes")),
    ("bundle", ("storage", "data", "kubernetes", "platform")),
    ("verify", ("storage", "data", "kubernetes", "ingress", "platform", "cloud", "bundle")),
]
# The lab: no tenant (tests/lab/test_cloud.py gives it one), the five clinical services.
LAB_PHASES = [
    ("preflight", ()),
    ("base", ("preflight",)),
    ("storage", ("base",)),
    ("data", ("base",)),
    ("kubernetes", ("base",)),
    ("ingress", ("base",)),
    ("platform", ("kubernetes",)),
    ("bundle", ("storage", "data", "kubernetes", "platform")),
    ("verify", ("storage", "data", "kubernetes", "ingress", "platform", "bundle")),
]


def test_lab_placement() -> None:
    plan = plan_site(load_site(LAB))
    assert {n.name: n.roles for n in plan.nodes} == LAB_PLACEMENT
    assert [n.address for n in plan.nodes] == [f"10.77.0.{i}" for i in range(11, 19)]
    assert [n.disks for n in plan.nodes] == [("/dev/vdb",)] * 4 + [()] * 4
    assert [(p.name, p.depends_on) for p in plan.phases] == LAB_PHASES
    assert (plan.site, plan.hospital) == ("lab", "Lab General Hospital")


def test_sample_hospital_has_the_lab_shape() -> None:
    plan = plan_site(load_site(SAMPLE))
    renamed = {n.name.replace("sg-srv-", "lab-"): n.roles for n in plan.nodes}
    assert renamed == LAB_PLACEMENT
    assert plan.nodes[0].disks == ("/dev/sdb", "/dev/sdc")
    assert [(p.name, p.depends_on) for p in plan.phases] == FULL_PHASES
    assert [p.executor for p in plan.phases] == [
        "paramiko",
        "ansible",
        "ansible",
        "ansible",
        "ansible",
        "ansible",
        "pulumi",
        "pulumi",
        "ansible+pulumi",
        "testinfra",
    ]


def test_the_plan_is_byte_identical_every_time() -> None:
    first = plan_site(load_site(LAB)).to_json()
    second = plan_site(load_site(LAB)).to_json()
    assert first == second
    assert json.loads(first)["nodes"][7]["roles"] == list(LAB_PLACEMENT["lab-08"])


def test_disabled_services_have_no_roles_and_no_phases() -> None:
    data = load_site(LAB).model_dump(mode="json")
    data["services"]["ceph"]["enabled"] = False
    data["services"]["redis"]["enabled"] = False
    data["cloud"]["tenants"] = []
    data["bundle"]["services"] = ["patient-index"]
    plan = plan_site(Site.model_validate(data))
    assert [(p.name, p.depends_on) for p in plan.phases] == [
        ("preflight", ()),
        ("base", ("preflight",)),
        ("data", ("base",)),
        ("kubernetes", ("base",)),
        ("ingress", ("base",)),
        ("platform", ("kubernetes",)),
        ("bundle", ("data", "kubernetes", "platform")),
        ("verify", ("data", "kubernetes", "ingress", "platform", "bundle")),
    ]
    roles = {r for n in plan.nodes for r in n.roles}
    assert roles == {"etcd", "postgres", "k8s-server", "k8s-agent", "gateway"}
    assert all(n.disks == () for n in plan.nodes)


# Random valid sites of 3..64 servers.

DISKS = ("/dev/sdb", "/dev/sdc", "/dev/nvme0n1")
SERVICES = ("ceph", "postgres", "redis", "kubernetes")


@st.composite
def sites(draw: st.DrawFn, pins: bool = True) -> dict[str, Any]:
    n = draw(st.integers(3, 64))
    ids = draw(st.lists(st.integers(1, 999), min_size=n, max_size=n, unique=True))
    hosts = draw(st.lists(st.integers(1, 250), min_size=n, max_size=n, unique=True))
    disks = [draw(st.lists(st.sampled_from(DISKS), max_size=3, unique=True)) for _ in range(n)]
    on = {svc: draw(st.sampled_from([True, True, False])) for svc in SERVICES}
    storage = [i for i in range(n) if disks[i]]
    if on["ceph"] and not storage:
        disks[0] = ["/dev/sdb"]
        storage = [0]
    servers: list[dict[str, Any]] = [
        {"name": f"s-{ids[i]}", "address": f"10.20.0.{hosts[i]}", "disks": disks[i], "roles": []}
        for i in range(n)
    ]
    ceph: dict[str, Any] = {"enabled": on["ceph"]}
    mons = 3
    if on["ceph"]:
        replicas = draw(st.integers(1, min(7, len(storage))))
        mons = draw(st.sampled_from([m for m in (1, 3, 5, 7) if m <= n]))
        ceph |= {"replicas": replicas, "min_size": draw(st.integers(1, replicas)), "mons": mons}
    bundle: list[str] = []
    if on["kubernetes"] and on["postgres"]:
        # imaging keeps its files in S3: the default bundle's entry needs Ceph (RGW)
        offered = [str(b) for b in BundleService if on["ceph"] or b is not BundleService.IMAGING]
        bundle = draw(st.lists(st.sampled_from(offered), unique=True))
    tenants = [
        {
            "name": f"t-{i}",
            "provider": draw(st.sampled_from(["s3-compatible", "aws", "alicloud", "azure"])),
            "api": f"https://s3.t-{i}.example.org",
            "region": "r-1",
            "endpoint": f"198.51.100.{i + 1}",
            "subnet": f"172.{16 + i}.0.0/16",
        }
        for i in range(draw(st.integers(0, 2)))
    ]
    if pins and draw(st.sampled_from([True, True, False])):
        enabled = {
            Role.CEPH_MON: on["ceph"],
            Role.CEPH_RGW: on["ceph"],
            Role.POSTGRES: on["postgres"],
            Role.REDIS: on["redis"],
            Role.K8S_SERVER: on["kubernetes"],
            Role.GATEWAY: True,
        }
        sizes = dict(QUORUM_SIZE) | {Role.CEPH_MON: mons}
        chosen: dict[Role, list[int]] = {}
        for role, ok in enabled.items():
            if ok:
                chosen[role] = draw(
                    st.lists(st.integers(0, n - 1), max_size=sizes[role], unique=True)
                )
        for follower, leader, size in (
            (Role.ETCD, Role.POSTGRES, 3),
            (Role.REDIS_SENTINEL, Role.REDIS, 3),
            (Role.CEPH_MGR, Role.CEPH_MON, 2),
        ):
            if chosen.get(leader):
                chosen[follower] = draw(
                    st.lists(st.sampled_from(chosen[leader]), max_size=size, unique=True)
                )
        if on["ceph"]:
            chosen[Role.CEPH_OSD] = draw(st.lists(st.sampled_from(storage), unique=True))
        if on["kubernetes"] and n > 3:
            free = [i for i in range(n) if i not in chosen.get(Role.K8S_SERVER, [])]
            chosen[Role.K8S_AGENT] = draw(
                st.lists(st.sampled_from(free), max_size=n - 3, unique=True)
            )
        for role in Role:  # pins in vocabulary order, as a person would write them
            for i in chosen.get(role, []):
                servers[i]["roles"].append(str(role))
    return {
        "hospital": {"name": "Random Hospital", "code": "random"},
        "servers": servers,
        "networks": {
            "management": "10.20.0.0/24",
            "postgres_vip": "10.20.0.253",
            "kubernetes_vip": "10.20.0.254",
        },
        "services": {
            "ceph": ceph,
            "postgres": {"enabled": on["postgres"]},
            "redis": {"enabled": on["redis"]},
            "kubernetes": {"enabled": on["kubernetes"]},
        },
        "cloud": {"tenants": tenants},
        "bundle": {"services": bundle},
    }


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def valid(data: dict[str, Any]) -> Site:
    # The generator makes only valid sites: a SiteError here is a finding, not noise.
    return parse_site(Loaded(data, {}))


def check_quorum_groups_have_their_exact_size(site: Site, plan: Plan) -> None:
    n = len(site.servers)
    mons = site.services.ceph.mons
    sizes = dict(QUORUM_SIZE) | {Role.CEPH_MON: mons, Role.CEPH_MGR: min(2, mons)}
    for role, size in sizes.items():
        want = min(size, n) if site.enabled(role) else 0
        assert len(plan.hosts(role)) == want, role


def check_followers_sit_with_their_group(site: Site, plan: Plan) -> None:
    assert members(plan, Role.ETCD) == members(plan, Role.POSTGRES)
    assert members(plan, Role.REDIS_SENTINEL) == members(plan, Role.REDIS)
    assert members(plan, Role.CEPH_MGR) <= members(plan, Role.CEPH_MON)


def check_osds_are_exactly_the_servers_with_disks(site: Site, plan: Plan) -> None:
    with_disks = {s.name for s in site.servers if s.disks}
    assert members(plan, Role.CEPH_OSD) == (with_disks if site.services.ceph.enabled else set())
    for server, node in zip(site.servers, plan.nodes, strict=True):
        assert node.disks == (tuple(server.disks) if "ceph-osd" in node.roles else ())


def check_every_kubernetes_node_is_a_server_or_an_agent(site: Site, plan: Plan) -> None:
    everyone = {s.name for s in site.servers}
    servers, agents = members(plan, Role.K8S_SERVER), members(plan, Role.K8S_AGENT)
    assert not servers & agents
    if site.services.kubernetes.enabled:
        assert agents == everyone - servers
    else:
        assert servers == agents == set()


def check_pins_are_respected(site: Site, plan: Plan) -> None:
    for server, node in zip(site.servers, plan.nodes, strict=True):
        assert {str(r) for r in server.roles} <= set(node.roles), server.name


def check_without_pins_the_heaviest_groups_do_not_share_servers(site: Site, plan: Plan) -> None:
    if len(site.servers) >= 6:
        assert not members(plan, Role.POSTGRES) & members(plan, Role.K8S_SERVER)


def check_nodes_follow_the_site_and_speak_the_vocabulary(site: Site, plan: Plan) -> None:
    assert [(n.name, n.address) for n in plan.nodes] == [
        (s.name, str(s.address)) for s in site.servers
    ]
    order = [str(r) for r in Role]
    for node in plan.nodes:
        assert set(node.roles) <= VOCABULARY
        assert list(node.roles) == sorted(node.roles, key=order.index)


def check_disabled_services_have_no_role_and_no_phase(site: Site, plan: Plan) -> None:
    present = {r for n in plan.nodes for r in n.roles}
    for role in Role:
        if not site.enabled(role):
            assert str(role) not in present
    svc = site.services
    expected = {
        "preflight": True,
        "base": True,
        "storage": svc.ceph.enabled,
        "data": svc.postgres.enabled or svc.redis.enabled,
        "kubernetes": svc.kubernetes.enabled,
        "ingress": svc.kubernetes.enabled,
        "platform": svc.kubernetes.enabled,
        "cloud": bool(site.cloud.tenants),
        "bundle": bool(site.bundle.services),
        "verify": True,
    }
    assert [p.name for p in plan.phases] == [p for p in ALL_PHASES if expected[p]]


def check_phases_are_topologically_ordered(site: Site, plan: Plan) -> None:
    seen: list[str] = []
    for phase in plan.phases:
        assert set(phase.depends_on) <= set(seen), phase.name
        assert len(set(phase.depends_on)) == len(phase.depends_on)
        assert phase.depends_on or phase.name == "preflight"
        seen.append(phase.name)
    assert seen[0] == "preflight"
    assert seen[-1] == "verify"


def check_json_keeps_its_contract(site: Site, plan: Plan) -> None:
    doc = json.loads(plan.to_json())
    assert {"site", "nodes", "phases"} <= set(doc)
    assert doc["site"] == site.hospital.code
    for node in doc["nodes"]:
        assert {"name", "address", "roles"} <= set(node)
        assert isinstance(node["name"], str)
        assert isinstance(node["address"], str)
        assert all(isinstance(r, str) and r in VOCABULARY for r in node["roles"])
    for phase in doc["phases"]:
        assert {"name", "depends_on"} <= set(phase)
        assert isinstance(phase["name"], str)
        assert all(isinstance(d, str) for d in phase["depends_on"])


INVARIANTS = [
    check_quorum_groups_have_their_exact_size,
    check_followers_sit_with_their_group,
    check_osds_are_exactly_the_servers_with_disks,
    check_every_kubernetes_node_is_a_server_or_an_agent,
    check_pins_are_respected,
    check_nodes_follow_the_site_and_speak_the_vocabulary,
    check_disabled_services_have_no_role_and_no_phase,
    check_phases_are_topologically_ordered,
    check_json_keeps_its_contract,
]


# One generated site serves every invariant: drawing 64-server sites is the slow part.
@PROPERTY
@given(sites())
def test_planner_invariants_hold_for_random_valid_sites(data: dict[str, Any]) -> None:
    site = valid(data)
    plan = plan_site(site)
    for check in INVARIANTS:
        check(site, plan)
    assert plan.to_json() == plan_site(valid(data)).to_json()


@PROPERTY
@given(sites(pins=False))
def test_without_pins_the_heaviest_groups_do_not_share_servers(data: dict[str, Any]) -> None:
    site = valid(data)
    check_without_pins_the_heaviest_groups_do_not_share_servers(site, plan_site(site))
