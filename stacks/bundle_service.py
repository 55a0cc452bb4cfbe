"""One clinical service of the bundle on the cluster: one stack per service (hzcloud bundle phase).

Namespace hz-<entry>; a Secret with the variables that hold credentials; a ConfigMap with the
entry's config files (references resolved, nothing secret) and the site CA; a Deployment of the
image imported into each node's containerd; a NodePort Service on the ports the way in routes to.
Values come resolved from the installer (hzcloud.bundle.render_entry), as plain Python.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class Probe:
    port: int
    path: str = ""  # HTTP GET this path; empty: a TCP connect
    period: int = 10
    timeout: int = 2
    failures: int = 3


@dataclass(frozen=True)
class ServicePort:
    name: str  # a DNS label of at most 15 characters
    target: int  # the container's port, also the Service's
    node_port: int  # the way in routes here on every node (hzcloud.wayin.routes)


@dataclass(frozen=True)
class ServiceArgs:
    kubeconfig: str
    name: str
    namespace: str
    version: str
    image: str  # fully qualified, imported into containerd on the nodes (never pulled)
    readiness: Probe
    liveness: Probe
    startup: Probe | None = None
    init_images: tuple[str, ...] = ()
    config: dict[str, str] = field(default_factory=dict)  # path -> content
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    ca_pem: str = ""
    ca_path: str = "/etc/hzcloud/ca.crt"
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "100m", "memory": "128Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "512Mi"})
    replicas: int = 1
    ports: tuple[ServicePort, ...] = ()
    # none: the image's own user, which runAsNonRoot requires to be numeric and not root
    run_as_user: int | None = None
    # seconds a new version's pods have to become ready: after them the Deployment reports
    # ProgressDeadlineExceeded and the stack's update fails (the installer then rolls back)
    ready_within: int = 600


def _probe(p: Probe | None) -> k8s.core.v1.ProbeArgs | None:
    if p is None:
        return None
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=p.path, port=p.port) if p.path else None,
        tcp_socket=None if p.path else k8s.core.v1.TCPSocketActionArgs(port=p.port),
        period_seconds=p.period,
        timeout_seconds=p.timeout,
        failure_threshold=p.failures,
    )


def _files(args: ServiceArgs) -> dict[str, str]:
    """ConfigMap key -> mount path: the config files and the site CA (keys cannot hold '/')."""
    paths = [*args.config, *([args.ca_path] if args.ca_pem else [])]
    return {f"f{i}-{posixpath.basename(p)}": p for i, p in enumerate(paths)}


class BundleService(pulumi.ComponentResource):
    """A stateless clinical service: its state lives in PostgreSQL, Redis and S3."""

    def __init__(
        self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hzcloud:bundle:Service", name, None, opts)
        provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=args.kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = {
            "app.kubernetes.io/name": args.name,
            "app.kubernetes.io/part-of": "hzcloud-bundle",
        }
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace, labels=labels),
            opts=child,
        )

        def meta(kind: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=f"{args.name}{kind}", namespace=ns.metadata.name, labels=labels
            )

        files = _files(args)
        contents = {**args.config, args.ca_path: args.ca_pem} if args.ca_pem else args.config
        data = {key: contents[path] for key, path in files.items()}
        config = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta("-config"), data=data, opts=child
        )
        secret = k8s.core.v1.Secret(
            f"{name}-env",
            metadata=meta("-env"),
            string_data=pulumi.Output.secret(dict(args.secret_env)),
            type="Opaque",
            opts=child,
        )
        # config files are mounted by subPath, which a changed ConfigMap does not update: a hash
        # of everything the pods read rolls them instead (the secret's values only as a hash)
        digest = hashlib.sha256(
            json.dumps([data, args.env, args.secret_env], sort_keys=True).encode()
        ).hexdigest()[:16]
        env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in sorted(args.env.items())]
        env += [
            k8s.core.v1.EnvVarArgs(
                name=k,
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=secret.metadata.name, key=k
                    )
                ),
            )
            for k in sorted(args.secret_env)
        ]
        mounts = [
            k8s.core.v1.VolumeMountArgs(name="config", mount_path=p, sub_path=key, read_only=True)
            for key, p in files.items()
        ] + [k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")]
        security = k8s.core.v1.SecurityContextArgs(
            run_as_non_root=True,
            run_as_user=args.run_as_user,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        )
        resources = k8s.core.v1.ResourceRequirementsArgs(
            requests=dict(args.requests), limits=dict(args.limits)
        )

        def container(cname: str, image: str, main: bool) -> k8s.core.v1.ContainerArgs:
            return k8s.core.v1.ContainerArgs(
                name=cname,
                image=image,
                # images come from the node's own store: an air-gapped site has no registry
                image_pull_policy="Never",
                env=env,
                volume_mounts=mounts,
                resources=resources,
                security_context=security,
                ports=[
                    k8s.core.v1.ContainerPortArgs(container_port=p.target, name=p.name)
                    for p in args.ports
                ]
                if main
                else None,
                startup_probe=_probe(args.startup) if main else None,
                readiness_probe=_probe(args.readiness) if main else None,
                liveness_probe=_probe(args.liveness) if main else None,
            )

        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deploy",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.name,
                namespace=ns.metadata.name,
                labels=labels,
                # pulumi-kubernetes waits this long for the rollout, then fails the update
                annotations={"pulumi.com/timeoutSeconds": str(args.ready_within)},
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                progress_deadline_seconds=args.ready_within,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                # a new version starts before an old pod stops: the service stays up
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                        max_unavailable=0, max_surge=1
                    ),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels={**labels, "app.kubernetes.io/version": args.version},
                        annotations={"hzcloud.io/config-hash": digest},
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        init_containers=[
                            container(f"init-{i}", img, False)
                            for i, img in enumerate(args.init_images)
                        ]
                        or None,
                        containers=[container(args.name, args.image, True)],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="config",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=config.metadata.name
                                ),
                            ),
                            k8s.core.v1.VolumeArgs(
                                name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()
                            ),
                        ],
                        automount_service_account_token=False,
                        # replicas on different nodes where they can be: a node lost is one pod
                        topology_spread_constraints=[
                            k8s.core.v1.TopologySpreadConstraintArgs(
                                max_skew=1,
                                topology_key="kubernetes.io/hostname",
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                            )
                        ],
                    ),
                ),
            ),
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-svc",
            metadata=meta(""),
            spec=k8s.core.v1.ServiceSpecArgs(
                # NodePort, never LoadBalancer: the way in (HAProxy on the gateway) is the only
                # door from the hospital network, and it routes to these ports on every node
                type="NodePort",
                selector=labels,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name=p.name, port=p.target, target_port=p.target, node_port=p.node_port
                    )
                    for p in args.ports
                ],
            ),
            opts=child,
        )
        self.namespace = ns.metadata.name
        self.node_ports = self.service.spec.ports.apply(
            lambda ports: {p.name: p.node_port for p in ports or []}
        )
        self.register_outputs({"namespace": self.namespace, "node_ports": self.node_ports})


def program(args: ServiceArgs) -> None:
    """Inline Pulumi program: one service, with its namespace and node ports as outputs."""
    svc = BundleService(args.name, args)
    pulumi.export("namespace", svc.namespace)
    pulumi.export("version", args.version)
    pulumi.export("node_ports", svc.node_ports)
