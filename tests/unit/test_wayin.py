"""The way in as plan facts: routes, their NodePorts, the address, the site's names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import pick_services

from hzcloud.errors import SiteError
from hzcloud.model import load_site
from hzcloud.phases.platform import site_records
from hzcloud.plan import plan_site
from hzcloud.render import render
from hzcloud.wayin import NODE_PORT_COUNT, NODE_PORT_FIRST, ingress_address, routes


def _edit(site_dir: Path, change: str, to: str) -> None:
    file = site_dir / "site.yaml"
    text = file.read_text()
    assert change in text
    file.write_text(text.replace(change, to, 1))


def _routes(site_dir: Path) -> dict[str, object]:
    site = load_site(site_dir)
    return {r.name: r for r in routes(site, plan_site(site), site_dir)}


@pytest.fixture
def lab_dir(lab_dir: Path) -> Path:
    """The lab site without its bundle: the platform's canary is its only route."""
    pick_services(lab_dir, [])
    return lab_dir


def test_the_canary_is_on_the_way_in_by_its_host_name(lab_dir: Path) -> None:
    (echo,) = _routes(lab_dir).values()
    assert (echo.kind, echo.host, echo.port) == ("https", "echo.lab.internal", 443)  # type: ignore[attr-defined]
    assert (echo.namespace, echo.service, echo.target) == ("hz-echo", "echo", 80)  # type: ignore[attr-defined]


def test_bundle_entries_bring_https_and_tcp_routes_and_no_node_port_moves(lab_dir: Path) -> None:
    before = _routes(lab_dir)
    pick_services(lab_dir, ["imaging", "patient-index", "orders"])
    after = _routes(lab_dir)
    assert sorted(after) == ["echo", "fhir", "imaging", "imaging-dicom"]
    dicom = after["imaging-dicom"]
    assert (dicom.kind, dicom.port, dicom.target, dicom.host) == (  # type: ignore[attr-defined]
        "tcp",
        4242,
        4242,
        "imaging.lab.internal",
    )
    assert after["echo"] == before["echo"]  # adding services moves no route
    ports = [r.node_port for r in after.values()]  # type: ignore[attr-defined]
    assert len(set(ports)) == len(ports)
    assert all(NODE_PORT_FIRST <= p < NODE_PORT_FIRST + NODE_PORT_COUNT for p in ports)


def test_the_domain_and_the_vip_come_from_site_yaml(lab_dir: Path) -> None:
    _edit(lab_dir, "  code: lab\n", "  code: lab\n  domain: lab.example-health.org\n")
    site = load_site(lab_dir)
    plan = plan_site(site)
    assert [r.host for r in routes(site, plan, lab_dir)] == ["echo.lab.example-health.org"]
    assert ingress_address(site, plan) == "10.77.0.102"
    _edit(lab_dir, "  ingress_vip: 10.77.0.102", "")
    site = load_site(lab_dir)
    assert ingress_address(site, plan_site(site)) == "10.77.0.18"  # the gateway's own


def test_no_kubernetes_no_way_in(lab_dir: Path) -> None:
    _edit(lab_dir, "    version: v1.37.2\n", "    enabled: false\n")
    assert _routes(lab_dir) == {}


@pytest.mark.parametrize(
    ("change", "to", "key"),
    [
        ("ingress_vip: 10.77.0.102", "ingress_vip: 10.77.0.101", "networks.ingress_vip"),
        ("ingress_vip: 10.77.0.102", "ingress_vip: 10.99.0.5", "networks.ingress_vip"),
        ("  code: lab\n", "  code: lab\n  domain: Lab_Internal\n", "hospital.domain"),
    ],
)
def test_a_bad_vip_or_domain_is_named(lab_dir: Path, change: str, to: str, key: str) -> None:
    _edit(lab_dir, change, to)
    with pytest.raises(SiteError) as err:
        load_site(lab_dir)
    assert [p.key for p in err.value.problems] == [key]


def test_the_sites_names_are_its_endpoints_and_the_way_in(lab_dir: Path) -> None:
    site = load_site(lab_dir)
    records = site_records(site, plan_site(site), lab_dir)
    assert records["postgres"] == ["10.77.0.100"]
    assert records["s3"] == ["10.77.0.17", "10.77.0.18"]  # every RGW
    assert records["redis"] == ["10.77.0.13", "10.77.0.14", "10.77.0.16"]  # the sentinels
    assert records["echo"] == records["ingress"] == ["10.77.0.102"]


def test_postgres_endpoint_verifies_the_servers_name(lab_dir: Path) -> None:
    """Clients check the certificate's names, not only its CA: the VIP is in every certificate."""
    from hzcloud.phases.data import PHASE

    site = load_site(lab_dir)
    (pg,) = [e for e in PHASE.endpoints(site, plan_site(site), lab_dir) if e.name == "postgres"]
    assert pg.url.startswith("postgresql://10.77.0.100:5432/")
    assert "sslmode=verify-full" in pg.url and "target_session_attrs=read-write" in pg.url
    assert pg.ca == str(lab_dir / "pki" / "ca.crt")


def test_render_hands_the_routes_to_the_gateway_role(lab_dir: Path) -> None:
    site = load_site(lab_dir)
    render(site, plan_site(site), lab_dir)
    facts = yaml.safe_load((lab_dir / "state/group_vars/all/way_in.yml").read_text())
    assert facts["way_in_vip"] == "10.77.0.102"
    assert [r["host"] for r in facts["way_in_routes"]] == ["echo.lab.internal"]
    assert len(facts["way_in_nodes"]) == 8
    k8s = yaml.safe_load((lab_dir / "state/group_vars/all/kubernetes.yml").read_text())
    assert k8s["kubernetes_cluster_dns_ip"] == "10.43.0.10"
