"""The lab's proof stack: a namespace, a deployment of the echo test image and its service."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class EchoArgs:
    kubeconfig: str
    # as imported into containerd from <artifacts>/images (scripts/build-images)
    image: str = "hzcloud.local/hzcloud-echo:0.2.0"
    namespace: str = "hz-echo"
    replicas: int = 2
    port: int = 8080
    # on the way in: the Service is a NodePort with this port on every node (hzcloud.wayin)
    node_port: int | None = None


class EchoService(pulumi.ComponentResource):
    """A tiny HTTP service that answers with its pod's name: proves scheduling and networking."""

    def __init__(
        self,
        name: str,
        args: EchoArgs,
        opts: pulumi.ResourceOptions | None = None,
        provider: k8s.Provider | None = None,
    ) -> None:
        super().__init__("hzcloud:test:EchoService", name, None, opts)
        if provider is None:
            provider = k8s.Provider(
                f"{name}-k8s", kubeconfig=args.kubeconfig, opts=pulumi.ResourceOptions(parent=self)
            )
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "hzcloud"}
        ns = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace), opts=child
        )
        meta = k8s.meta.v1.ObjectMetaArgs(name=name, namespace=ns.metadata.name, labels=labels)
        container = k8s.core.v1.ContainerArgs(
            name=name,
            image=args.image,
            # images come from the node's own store: an air-gapped site has no registry
            image_pull_policy="Never",
            ports=[k8s.core.v1.ContainerPortArgs(container_port=args.port, name="http")],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "10m", "memory": "16Mi"}, limits={"cpu": "200m", "memory": "64Mi"}
            ),
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/", port=args.port), period_seconds=2
            ),
            security_context=k8s.core.v1.SecurityContextArgs(
                run_as_non_root=True,
                run_as_user=65534,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
            ),
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deploy",
            metadata=meta,
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(containers=[container]),
                ),
            ),
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-svc",
            metadata=meta,
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP" if args.node_port is None else "NodePort",
                selector=labels,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        port=80, target_port=args.port, name="http", node_port=args.node_port
                    )
                ],
            ),
            opts=child,
        )
        self.namespace = ns.metadata.name
        self.cluster_ip = self.service.spec.cluster_ip
        self.register_outputs({"namespace": self.namespace, "cluster_ip": self.cluster_ip})


def program(args: EchoArgs) -> None:
    """Inline Pulumi program: the echo service, with its address as a stack output."""
    echo = EchoService("echo", args)
    pulumi.export("namespace", echo.namespace)
    pulumi.export("cluster_ip", echo.cluster_ip)
