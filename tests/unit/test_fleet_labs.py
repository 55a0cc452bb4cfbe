"""Several labs on one host: every host-wide name comes from the site, and clashes are refused."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hzcloud.cloudlink import endpoint_interface
from hzcloud.lab.spec import (
    LabClaim,
    LabServer,
    LabSpec,
    LabTenant,
    bridge_name,
    claim_of,
    clash_error,
    clashes,
    cloud_bridge_name,
    load_spec,
    tenant_netns_name,
)

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "inventories" / "lab-fleet"

codes = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)


def spec(code: str, net: str = "10.83.0", tenant: bool = False) -> LabSpec:
    servers = tuple(
        LabServer(f"{code}-0{i}", f"{net}.1{i}", ("/dev/vdb",), ("gateway",) if i == 3 else ())
        for i in (1, 2, 3)
    )
    cloud = LabTenant("dr", "10.98.0.1", "10.99.0.0/24") if tenant else None
    return LabSpec(code, servers, f"{net}.0/24", None, cloud, "root", "keys/id_ed25519")


@given(codes)
def test_host_link_names_fit_the_kernel_limit(code: str) -> None:
    for name in (bridge_name(code), cloud_bridge_name(code), tenant_netns_name(code, "x" * 63)):
        assert len(name) <= 15, name  # IFNAMSIZ - 1


@given(codes, codes)
def test_two_codes_never_share_a_bridge_unnoticed(a: str, b: str) -> None:
    if a != b:
        assert bridge_name(a) != bridge_name(b) or clashes(
            claim_of(Path("/a"), spec(a)), claim_of(Path("/b"), spec(b, "10.84.0"))
        )


def test_the_old_five_letter_cut_no_longer_collides() -> None:
    # code[:5] gave both `hzstgeo-mgmt`
    assert bridge_name("stgeorge") != bridge_name("stgeo")
    assert bridge_name("lab").startswith("hzlab")


def test_distinct_sites_do_not_clash() -> None:
    claims = [
        claim_of(FLEET / n, load_spec(FLEET / n / "site.yaml")) for n in ("fla", "flb", "flc")
    ]
    assert [c.links for c in claims] == [(bridge_name(n),) for n in ("fla", "flb", "flc")]
    for a, b in combinations(claims, 2):
        assert clashes(a, b) == []


def test_same_code_overlapping_networks_and_machine_names_clash() -> None:
    mine = claim_of(Path("/sites/a"), spec("fla"))
    theirs = claim_of(Path("/sites/b"), spec("fla", "10.83.0"))
    assert clashes(mine, theirs) == [
        "both have hospital.code 'fla'",
        "network 10.83.0.0/24 overlaps 10.83.0.0/24",
        "both name servers fla-01, fla-02, fla-03 (nspawn machine names)",
        f"both need host links {bridge_name('fla')}",
    ]
    wider = replace(claim_of(Path("/sites/c"), spec("flz", "10.84.0")), networks=("10.80.0.0/12",))
    assert clashes(mine, wider) == ["network 10.83.0.0/24 overlaps 10.80.0.0/12"]
    renamed = replace(claim_of(Path("/sites/d"), spec("fly", "10.86.0")), machines=("fla-02",))
    assert clashes(mine, renamed) == ["both name servers fla-02 (nspawn machine names)"]


def test_tenant_networks_and_links_are_claimed_too() -> None:
    mine = claim_of(Path("/a"), spec("fla", tenant=True))
    # the cloud bridge (the /24 around the endpoint) and the tenant subnet behind the tunnel
    assert mine.networks == ("10.83.0.0/24", "10.98.0.0/24", "10.99.0.0/24")
    assert mine.netns == tenant_netns_name("fla", "dr")
    wg = endpoint_interface("fla", "dr")
    assert mine.links == (
        bridge_name("fla"),
        cloud_bridge_name("fla"),
        mine.netns,
        wg,
        "vt-fla-03",
    )
    theirs = claim_of(Path("/b"), spec("flb", "10.84.0", tenant=True))
    assert clashes(mine, theirs) == [
        "network 10.98.0.0/24 overlaps 10.98.0.0/24",
        "network 10.99.0.0/24 overlaps 10.99.0.0/24",
    ]
    assert LabClaim.from_dict(mine.to_dict()) == mine


def test_the_clash_error_names_both_sites_and_the_fix() -> None:
    mine = claim_of(Path("/sites/a"), spec("fla"))
    theirs = claim_of(Path("/sites/b"), spec("fla"))
    err = clash_error(mine, theirs, clashes(mine, theirs))
    assert err.exit_code == 2
    assert err.what == "the lab of /sites/a clashes with the lab up from /sites/b"
    assert err.cause.startswith("both have hospital.code 'fla'; network 10.83.0.0/24 overlaps")
    assert err.fix == (
        "give /sites/a/site.yaml its own hospital.code, networks and server names "
        "(lab servers are named after the code, e.g. fla-01), "
        "or take the other lab down: hzcloud lab down --site /sites/b"
    )
