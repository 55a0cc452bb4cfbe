"""kubernetes: upstream Kubernetes from the site's artifacts folder (Ansible role kubernetes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from hzcloud.outcome import Check
from hzcloud.phases import CheckContext, Endpoint, Need, Phase, Port, artifact_needs
from hzcloud.pki import ca_cert_path

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

API_PORT = 6443
SERVER_BINARIES = (
    "etcd",
    "etcdctl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
)
NODE_BINARIES = ("kubelet", "kube-proxy")
# images every node imports into containerd (scripts/build-images makes them)
IMAGES = (
    {"file": "images/pause-3.10.2.tar", "ref": "hzcloud.local/pause:3.10.2"},
    {"file": "images/hzcloud-echo-0.2.0.tar", "ref": "hzcloud.local/hzcloud-echo:0.2.0"},
    {"file": "images/coredns-1.15.0.tar", "ref": "hzcloud.local/coredns:1.15.0"},
)
ECHO_IMAGE = IMAGES[1]["ref"]
COREDNS_IMAGE = IMAGES[2]["ref"]


def cluster_dns_ip(site: Site) -> str:
    """The cluster DNS Service's address: the tenth of service_cidr (the first is the API's)."""
    return str(site.networks.service_cidr[10])


def _needs(site: Site, site_dir: Path) -> list[Need]:
    files = [f"bin/{b}" for b in (*SERVER_BINARIES, *NODE_BINARIES)] + [i["file"] for i in IMAGES]
    return artifact_needs(site, site_dir, files, "Kubernetes")


def _endpoints(site: Site, plan: Plan, site_dir: Path) -> list[Endpoint]:
    servers = plan.hosts("k8s-server")
    if not servers:
        return []
    api = str(site.networks.kubernetes_vip or servers[0].address)
    return [
        Endpoint(
            "kubernetes-api",
            f"https://{api}:{API_PORT}",
            str(ca_cert_path(site_dir)),
            f"kubeconfig: {site_dir / 'kubeconfig'}",
        )
    ]


KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.kubeconfig"


def _checks(ctx: CheckContext) -> list[Check]:
    """Every node of the plan Ready (kubectl on the first server)."""
    hosts, plan = ctx.hosts, ctx.plan
    if not plan.hosts("k8s-server"):
        return []
    first = plan.hosts("k8s-server")[0].name
    want = {n.name for n in plan.nodes if {"k8s-server", "k8s-agent"} & set(n.roles)}
    res = hosts[first].run(f"{KUBECTL} get nodes -o json")
    try:
        items = json.loads(res.stdout)["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
        }
        detail = f"{len(ready & want)} of {len(want)} Ready" + (
            f"; not Ready: {sorted(want - ready)}" if want - ready else ""
        )
        out = [Check("kubernetes nodes Ready", first, want <= ready, detail)]
    except (ValueError, KeyError, TypeError):
        out = [Check("kubernetes nodes Ready", first, False, (res.stderr or res.stdout)[:200])]
    return out


PHASE = Phase(
    name="kubernetes",
    description="HA Kubernetes servers and agents from the artifacts folder",
    executor="ansible",
    depends_on=("base",),
    roles=("k8s-server", "k8s-agent"),
    ports=(
        Port("kube_api", API_PORT, "k8s-server", "management", owners=("kube-apiserver",)),
        Port("kubelet", 10250, "k8s-server", owners=("kubelet",)),
        Port("kubelet_agent", 10250, "k8s-agent", owners=("kubelet",)),
        # Kubernetes' own etcd, beside Patroni's (2379/2380) on the same servers
        Port("kube_etcd_client", 2381, "k8s-server", owners=("etcd",)),
        Port("kube_etcd_peer", 2382, "k8s-server", owners=("etcd",)),
    ),
    services={
        "k8s-server": (
            "containerd",
            "kube-etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
        ),
        "k8s-agent": ("containerd", "kubelet", "kube-proxy"),
    },
    role_vars={
        "hz_kubernetes_server_binaries": list(SERVER_BINARIES),
        "hz_kubernetes_node_binaries": list(NODE_BINARIES),
        "hz_kubernetes_images": [dict(i) for i in IMAGES],
        "hz_kubernetes_pause_image": IMAGES[0]["ref"],
    },
    wanted=lambda site: site.services.kubernetes.enabled,
    needs=_needs,
    endpoints=_endpoints,
    checks=_checks,
)
