"""The cluster DNS: CoreDNS from the artifacts folder, highly available, serving the cluster's
services and the site's own names (postgres.<domain>, redis.<domain>, s3.<domain>, the way in's
host names) from the same endpoint facts `hzcloud status` prints."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

# Unprivileged: CoreDNS listens on 1053 and the Service maps port 53 to it.
LISTEN = 1053
HEALTH = 8080
READY = 8181
METRICS = 9153


@dataclass(frozen=True)
class ClusterDnsArgs:
    image: str  # imported into containerd from <artifacts>/images
    cluster_ip: str  # kubelet's clusterDNS
    domain: str  # the site's zone
    records: dict[str, list[str]]  # name (under domain) -> addresses
    upstream: list[str] = field(default_factory=list)  # the site's DNS servers; none: no forward
    cluster_domain: str = "cluster.local"
    replicas: int = 2


def corefile(args: ClusterDnsArgs) -> str:
    forward = f"    forward . {' '.join(args.upstream)}\n" if args.upstream else ""
    return (
        f".:{LISTEN} {{\n"
        "    errors\n"
        f"    health :{HEALTH} {{\n        lameduck 5s\n    }}\n"
        f"    ready :{READY}\n"
        f"    kubernetes {args.cluster_domain} in-addr.arpa ip6.arpa {{\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "        ttl 30\n"
        "    }\n"
        f"    prometheus :{METRICS}\n"
        f"{forward}"
        "    cache 30\n"
        "    loop\n"
        "    reload\n"
        "    loadbalance\n"
        "}\n"
        f"{args.domain}:{LISTEN} {{\n"
        "    errors\n"
        # answers only for names it has: any other name of the zone is NXDOMAIN
        "    hosts /etc/coredns/site.hosts {\n        ttl 30\n        no_reverse\n    }\n"
        "    cache 30\n"
        "    loadbalance\n"
        "}\n"
    )


def hosts_file(args: ClusterDnsArgs) -> str:
    return "".join(
        f"{address} {name}.{args.domain}\n"
        for name in sorted(args.records)
        for address in args.records[name]
    )


class ClusterDns(pulumi.ComponentResource):
    """CoreDNS in kube-system: two replicas on different nodes, a disruption budget of one."""

    def __init__(
        self,
        name: str,
        args: ClusterDnsArgs,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hzcloud:platform:ClusterDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        ns = "kube-system"
        labels = {"k8s-app": "kube-dns", "app.kubernetes.io/name": "coredns"}
        meta = k8s.meta.v1.ObjectMetaArgs(name="coredns", namespace=ns, labels=labels)
        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta, opts=child)
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-role",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="system:coredns", labels=labels),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""],
                    resources=["endpoints", "services", "pods", "namespaces"],
                    verbs=["list", "watch"],
                ),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["discovery.k8s.io"],
                    resources=["endpointslices"],
                    verbs=["list", "watch"],
                ),
            ],
            opts=child,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="system:coredns", labels=labels),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role.metadata.name
            ),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="coredns", namespace=ns)],
            opts=child,
        )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta,
            data={"Corefile": corefile(args), "site.hosts": hosts_file(args)},
            opts=child,
        )
        probe_port = k8s.core.v1.ContainerPortArgs
        container = k8s.core.v1.ContainerArgs(
            name="coredns",
            image=args.image,
            image_pull_policy="Never",  # from the node's own store: no registry
            args=["-conf", "/etc/coredns/Corefile"],
            ports=[
                probe_port(name="dns", container_port=LISTEN, protocol="UDP"),
                probe_port(name="dns-tcp", container_port=LISTEN, protocol="TCP"),
                probe_port(name="metrics", container_port=METRICS, protocol="TCP"),
            ],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "50m", "memory": "48Mi"}, limits={"memory": "170Mi"}
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=HEALTH),
                initial_delay_seconds=10,
                period_seconds=10,
                failure_threshold=5,
            ),
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/ready", port=READY),
                period_seconds=2,
            ),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(
                    name="config", mount_path="/etc/coredns", read_only=True
                )
            ],
            security_context=k8s.core.v1.SecurityContextArgs(
                run_as_non_root=True,
                run_as_user=65534,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deploy",
            metadata=meta,
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                        max_unavailable=1, max_surge=1
                    ),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account.metadata.name,
                        priority_class_name="system-cluster-critical",
                        # its own upstream is the node's resolver, never itself
                        dns_policy="Default",
                        containers=[container],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="config",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=config.metadata.name
                                ),
                            )
                        ],
                        affinity=k8s.core.v1.AffinityArgs(
                            # never two replicas on one node: losing a node loses one at most
                            pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
                                required_during_scheduling_ignored_during_execution=[
                                    k8s.core.v1.PodAffinityTermArgs(
                                        label_selector=k8s.meta.v1.LabelSelectorArgs(
                                            match_labels=labels
                                        ),
                                        topology_key="kubernetes.io/hostname",
                                    )
                                ]
                            )
                        ),
                    ),
                ),
            ),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta,
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            ),
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-svc",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="kube-dns", namespace=ns, labels=labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip=args.cluster_ip,
                selector=labels,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="dns", port=53, target_port=LISTEN, protocol="UDP"
                    ),
                    k8s.core.v1.ServicePortArgs(
                        name="dns-tcp", port=53, target_port=LISTEN, protocol="TCP"
                    ),
                    k8s.core.v1.ServicePortArgs(
                        name="metrics", port=METRICS, target_port=METRICS, protocol="TCP"
                    ),
                ],
            ),
            opts=child,
        )
        self.register_outputs({"cluster_ip": self.service.spec.cluster_ip})
