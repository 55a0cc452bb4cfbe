"""The platform as a hospital workstation sees it (the lab host, on the management network):
the way in answers over HTTPS with a certificate of the site CA, pods find the site's names by
the cluster DNS, and losing a CoreDNS pod does not stop names from resolving.

Runs after the kubernetes suite on the same lab; its fixture converges ingress and platform
(seconds when they are: that suite destroys and re-creates the platform's stack).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import hzrun
import pytest

from hzcloud.model import load_site
from hzcloud.plan import plan_site
from hzcloud.wayin import ingress_address

pytestmark = pytest.mark.lab

HZ = [sys.executable, "-m", "hzcloud"]


@pytest.fixture(scope="module")
def way_in(converged_site: dict[str, Any], site_artifacts: Path) -> dict[str, Any]:
    site = Path(converged_site["site"])
    rc, data = hzrun.up_json(site, "ingress,platform")
    assert rc == 0, json.dumps(data, indent=2)
    loaded = load_site(site)
    status = json.loads(
        subprocess.run(
            [*HZ, "status", str(site), "--output", "json"], capture_output=True, text=True
        ).stdout
    )
    return {
        "site": site,
        "domain": loaded.hospital.site_domain,
        "address": ingress_address(loaded, plan_site(loaded)),
        "status": status,
    }


def get(way: dict[str, Any], host: str, path: str = "/", timeout: float = 10) -> str:
    """GET https://HOST.<domain>PATH through the way in's address, trusting only the site CA."""
    ingress = next(e for e in way["status"]["endpoints"] if e["name"] == "ingress")
    context = ssl.create_default_context(cafile=ingress["ca"])
    name = f"{host}.{way['domain']}"
    real = socket.create_connection

    def to_way_in(addr: tuple[str, int], *args: Any, **kw: Any) -> socket.socket:
        return real((way["address"], addr[1]), *args, **kw)

    socket.create_connection = to_way_in  # type: ignore[assignment]
    try:
        with urllib.request.urlopen(f"https://{name}{path}", context=context, timeout=timeout) as r:
            return str(r.read().decode())
    finally:
        socket.create_connection = real


def test_status_lists_the_way_in_with_the_site_ca(way_in: dict[str, Any]) -> None:
    (ingress,) = [e for e in way_in["status"]["endpoints"] if e["name"] == "ingress"]
    assert ingress["url"] == f"https://{way_in['address']}:443"
    assert ingress["ca"] == str(way_in["site"] / "pki" / "ca.crt")


def test_the_way_in_answers_with_the_site_ca_and_only_for_its_names(
    way_in: dict[str, Any],
) -> None:
    answer = get(way_in, "echo")
    assert answer.startswith("hzcloud-echo "), answer
    with pytest.raises((ssl.SSLError, urllib.error.URLError)):
        get(way_in, "no-such-service")  # no certificate for it: no handshake
    # a client that does not trust the site CA is refused by its own TLS
    plain = ssl.create_default_context()
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection((way_in["address"], 443), timeout=5) as raw,
        plain.wrap_socket(raw, server_hostname=f"echo.{way_in['domain']}"),
    ):
        pass


def test_pods_resolve_the_sites_names_and_cluster_services(way_in: dict[str, Any]) -> None:
    domain = way_in["domain"]
    postgres = next(e for e in way_in["status"]["endpoints"] if e["name"] == "postgres")
    vip = postgres["url"].split("@")[-1].split("//")[-1].split(":")[0]
    assert get(way_in, "echo", f"/resolve?name=postgres.{domain}").split() == [vip]
    assert get(way_in, "echo", "/resolve?name=kubernetes.default").split()
    with pytest.raises(urllib.error.HTTPError) as nx:
        get(way_in, "echo", f"/resolve?name=no-such-name.{domain}")
    assert nx.value.code == 404


def _dns_pods(site: Path) -> list[dict[str, Any]]:
    items = json.loads(
        hzrun.kubectl(
            site, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json"
        )
    )["items"]
    return [
        p
        for p in items
        if p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def test_a_coredns_pod_lost_names_keep_resolving(way_in: dict[str, Any]) -> None:
    site, domain = way_in["site"], way_in["domain"]
    pods = hzrun.wait_for(
        "two ready CoreDNS pods", lambda: _dns_pods(site)[1:] and _dns_pods(site), 120
    )
    assert len({p["spec"]["nodeName"] for p in pods}) == len(pods), "two replicas on one node"
    victim = pods[0]["metadata"]["name"]
    hzrun.kubectl(site, "-n", "kube-system", "delete", "pod", victim, "--grace-period=0", "--force")
    t0 = time.monotonic()
    answers, slowest = 0, 0.0
    while time.monotonic() - t0 < 20:
        start = time.monotonic()
        got = get(way_in, "echo", f"/resolve?name=postgres.{domain}", timeout=15)
        slowest = max(slowest, time.monotonic() - start)
        assert got.split(), "no address"
        answers += 1
        time.sleep(0.5)
    print(
        f"\nCoreDNS pod {victim} killed: {answers} lookups in 20 s, all answered, slowest {slowest:.1f} s"
    )
    back = hzrun.wait_for(
        "the replacement CoreDNS pod ready",
        lambda: len(_dns_pods(site)) >= 2 and _dns_pods(site),
        120,
    )
    assert victim not in {p["metadata"]["name"] for p in back}
    assert len({p["spec"]["nodeName"] for p in back}) == len(back)


def test_up_after_the_drill_changes_nothing(way_in: dict[str, Any]) -> None:
    rc, data = hzrun.up_json(way_in["site"], "ingress,platform")
    assert rc == 0
    assert {p["name"]: p["changes"] for p in data["phases"] if p["changed"]} == {}
