"""Policy tests of the platform's stacks (the echo canary, the cluster DNS) with Pulumi's own
mocks (no cluster, no engine). One module: Pulumi's mocks are process-wide."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "kubernetes:core/v1:Service":
            outputs.setdefault("spec", {})["clusterIP"] = "10.43.0.10"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


MOCKS = Mocks()
pulumi.runtime.set_mocks(MOCKS, preview=False)

from hzcloud.executors.pulumi import load_stack_module  # noqa: E402

echo = load_stack_module("echo")
dns = load_stack_module("cluster_dns")


def _build() -> Any:
    return echo.EchoService("echo", echo.EchoArgs(kubeconfig="{}", image="hzcloud/echo:1"))


@pulumi.runtime.test
def test_container_is_pinned_limited_and_unprivileged() -> Any:
    svc = _build()

    def check(spec: Any) -> None:
        (container,) = spec.template.spec.containers
        assert ":" in container.image and not container.image.endswith(":latest")
        assert container.image_pull_policy == "Never", "air-gapped: never pull"
        assert container.resources.limits["memory"]
        assert container.resources.limits["cpu"]
        assert container.security_context.run_as_non_root is True
        assert container.security_context.allow_privilege_escalation is False

    return svc.deployment.spec.apply(check)


@pulumi.runtime.test
def test_service_is_cluster_internal() -> Any:
    svc = _build()

    def check(spec: Any) -> None:
        assert spec.type == "ClusterIP", "no public LoadBalancer for hospital services"
        assert spec.ports[0].target_port == 8080

    return svc.service.spec.apply(check)


@pulumi.runtime.test
def test_on_the_way_in_the_service_is_a_node_port_of_the_plan() -> Any:
    svc = echo.EchoService(
        "wayin-echo", echo.EchoArgs(kubeconfig="{}", image="hzcloud/echo:1", node_port=30550)
    )

    def check(spec: Any) -> None:
        assert spec.type == "NodePort"
        assert spec.ports[0].node_port == 30550

    return svc.service.spec.apply(check)


def _dns() -> Any:
    import pulumi_kubernetes as k8s

    args = dns.ClusterDnsArgs(
        image="hzcloud.local/coredns:1.15.0",
        cluster_ip="10.43.0.10",
        domain="lab.internal",
        records={"postgres": ["10.77.0.100"], "s3": ["10.77.0.17", "10.77.0.18"]},
    )
    return dns.ClusterDns("cluster-dns", args, k8s.Provider("dns-k8s", kubeconfig="{}"))


@pulumi.runtime.test
def test_cluster_dns_has_two_replicas_never_on_one_node_unprivileged() -> Any:
    cluster_dns = _dns()

    def check(spec: Any) -> None:
        assert spec.replicas >= 2
        pod = spec.template.spec
        (term,) = pod.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
        assert term.topology_key == "kubernetes.io/hostname"
        (container,) = pod.containers
        assert container.image_pull_policy == "Never"
        assert container.security_context.run_as_non_root is True
        assert container.security_context.capabilities.drop == ["ALL"]
        assert pod.dns_policy == "Default", "CoreDNS must not ask itself"

    return cluster_dns.deployment.spec.apply(check)


@pulumi.runtime.test
def test_cluster_dns_service_is_kubelets_address_port_53() -> Any:
    cluster_dns = _dns()

    def check(spec: Any) -> None:
        assert spec.cluster_ip == "10.43.0.10"
        assert {(p.protocol, p.port, p.target_port) for p in spec.ports if p.port == 53} == {
            ("UDP", 53, dns.LISTEN),
            ("TCP", 53, dns.LISTEN),
        }

    return cluster_dns.service.spec.apply(check)


def test_cluster_dns_serves_the_sites_names_and_nothing_else_of_its_zone() -> None:
    args = dns.ClusterDnsArgs(
        image="x", cluster_ip="10.43.0.10", domain="lab.internal", records={"s3": ["a", "b"]}
    )
    assert dns.hosts_file(args) == "a s3.lab.internal\nb s3.lab.internal\n"
    core = dns.corefile(args)
    zone = core[core.index("lab.internal:") :]
    assert "fallthrough" not in zone  # an unknown name of the site's zone is NXDOMAIN
    assert "forward" not in core  # no upstream given: nothing leaves the site
    with_upstream = dns.ClusterDnsArgs(
        image="x", cluster_ip="10.43.0.10", domain="d.org", records={}, upstream=["10.0.0.53"]
    )
    assert "forward . 10.0.0.53" in dns.corefile(with_upstream)


@pulumi.runtime.test
def test_every_resource_uses_the_explicit_provider() -> Any:
    svc = _build()

    def check(_: Any) -> None:
        k8s_objects = [
            r
            for r in MOCKS.resources
            if r.typ.startswith("kubernetes:") and r.name.startswith("echo-")
        ]
        assert k8s_objects, "the component made no Kubernetes objects"
        assert all(r.provider and "echo-k8s" in r.provider for r in k8s_objects), [
            (r.typ, r.provider) for r in k8s_objects
        ]

    return svc.cluster_ip.apply(check)


def test_program_exists() -> None:
    assert callable(echo.program)
    with pytest.raises(TypeError):
        echo.EchoArgs()  # kubeconfig is required
