"""Policy tests of the echo stack with Pulumi's own mocks (no cluster, no engine)."""

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
def test_every_resource_uses_the_explicit_provider() -> Any:
    svc = _build()

    def check(_: Any) -> None:
        k8s_objects = [
            r
            for r in MOCKS.resources
            if r.typ.startswith("kubernetes:") and not r.typ.startswith("pulumi:providers")
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
