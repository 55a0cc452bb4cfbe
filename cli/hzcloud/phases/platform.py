"""platform: what hzcloud itself runs on the cluster, through Pulumi.

- the cluster DNS (stacks/cluster_dns.py): CoreDNS, two replicas on different nodes, serving
  the cluster's services and the site's own names (postgres.<domain>, redis.<domain>,
  s3.<domain>, the way in's host names) from the endpoint facts `hzcloud status` prints;
- the canary (stacks/echo.py): the echo service in its own namespace, on the way in as
  https://echo.<domain>/, which proves that the cluster schedules pods from images of the
  artifacts folder, routes to them, and that pods resolve names. `verify` asks it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hzcloud.outcome import Check
from hzcloud.phases import CheckContext, Need, Phase, artifact_needs
from hzcloud.wayin import ingress_address, route, routes

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

PULUMI_BINARIES = ("bin/pulumi", "bin/pulumi-resource-kubernetes")
CANARY_NAMESPACE = "hz-echo"


def _needs(site: Site, site_dir: Path) -> list[Need]:
    return artifact_needs(site, site_dir, PULUMI_BINARIES, "Pulumi")


def site_records(site: Site, plan: Plan, site_dir: Path) -> dict[str, list[str]]:
    """The site's own names (under its domain) and their addresses: one per endpoint of every
    planned phase, as `hzcloud status` lists them, and each host name of the way in."""
    from hzcloud import phases

    out: dict[str, list[str]] = {}

    def add(name: str, address: str) -> None:
        if address and address not in out.setdefault(name, []):
            out[name].append(address)

    def is_address(text: str) -> bool:  # a bundle endpoint's URL names the way in, not an address
        try:
            ip_address(text)
        except ValueError:
            return False
        return True

    planned = {p.name for p in plan.phases}
    for endpoint in phases.endpoints(site, plan, site_dir, planned):
        for hostport in urlsplit(endpoint.url).netloc.split(","):
            host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
            if is_address(host):
                add(endpoint.name, host)
    way_in = ingress_address(site, plan)
    for r in routes(site, plan, site_dir):
        add(r.host.removesuffix("." + site.hospital.site_domain), way_in)
    return out


def _program(site: Site, plan: Plan, site_dir: Path) -> Callable[[], None]:
    from hzcloud.executors.pulumi import load_stack_module
    from hzcloud.phases.kubernetes import COREDNS_IMAGE, ECHO_IMAGE, cluster_dns_ip

    echo = load_stack_module("echo")
    dns = load_stack_module("cluster_dns")
    kubeconfig = site_dir / "kubeconfig"
    canary = route(site, plan, site_dir, "echo")
    dns_args = dns.ClusterDnsArgs(
        image=COREDNS_IMAGE,
        cluster_ip=cluster_dns_ip(site),
        domain=site.hospital.site_domain,
        records=site_records(site, plan, site_dir),
        upstream=[str(a) for a in site.networks.dns],
    )

    def program() -> None:
        import pulumi_kubernetes as k8s

        config = kubeconfig.read_text()
        echo.program(
            echo.EchoArgs(
                kubeconfig=config,
                image=ECHO_IMAGE,
                namespace=CANARY_NAMESPACE,
                node_port=canary.node_port if canary else None,
            )
        )
        provider = k8s.Provider("cluster-dns-k8s", kubeconfig=config)
        dns.ClusterDns("cluster-dns", dns_args, provider)

    return program


def _get(host: object, url: str) -> tuple[bool, str]:
    """GET url from a node: (answered 200, the body's lines joined by spaces, or the error's
    last line)."""
    res = host.run(  # type: ignore[attr-defined]
        "python3 -c 'import sys, urllib.request as u;"
        "print(u.urlopen(sys.argv[1], timeout=5).read().decode())' " + shlex.quote(url)
    )
    if res.rc == 0:
        return True, " ".join(res.stdout.split())[:160]
    text = res.stderr.strip().splitlines()
    return False, (text[-1] if text else "")[:160]


def _checks(ctx: CheckContext) -> list[Check]:
    """From the first Kubernetes server: the canary answers by its service's ClusterIP, and a
    pod (the canary's own resolver) finds a cluster service and the site's names by the
    cluster DNS."""
    from hzcloud.phases.kubernetes import KUBECTL

    hosts, plan = ctx.hosts, ctx.plan
    if not plan.hosts("k8s-server"):
        return []
    first = plan.hosts("k8s-server")[0].name
    ip = hosts[first].run(
        f"{KUBECTL} -n {CANARY_NAMESPACE} get service echo -o jsonpath={{.spec.clusterIP}}"
    )
    address = ip.stdout.strip()
    ok, answer = _get(hosts[first], f"http://{address}/")
    out = [
        Check(
            "the echo canary answers by its service",
            first,
            bool(address) and ok and answer.startswith("hzcloud-echo "),
            f"http://{address}/ -> {answer}",
        )
    ]
    if not address or ctx.site is None or ctx.site_dir is None:
        return out
    site, site_dir = ctx.site, ctx.site_dir
    names = {"kubernetes.default": [str(site.networks.service_cidr[1])]}
    records = site_records(site, plan, site_dir)
    for name in ("postgres", "s3"):
        if name in records:
            names[f"{name}.{site.hospital.site_domain}"] = records[name]
    for name, want in names.items():
        ok, answer = _get(hosts[first], f"http://{address}/resolve?name={name}")
        out.append(
            Check(
                f"a pod resolves {name}",
                first,
                ok and sorted(answer.split()) == sorted(want),
                f"{name} -> {answer or 'nothing'} (want {', '.join(want)})",
            )
        )
    return out


PHASE = Phase(
    name="platform",
    description="hzcloud's own workloads on the cluster (the echo canary), through Pulumi",
    executor="pulumi",
    depends_on=("kubernetes",),
    wanted=lambda site: site.services.kubernetes.enabled,
    needs=_needs,
    program=_program,
    checks=_checks,
)
