"""Policy tests of a bundle service's stack with Pulumi's own mocks (no cluster, no engine)."""

from __future__ import annotations

from typing import Any

import pulumi


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


# Assertions read the resources' own outputs, so they hold whichever test module's mocks are set.
pulumi.runtime.set_mocks(Mocks(), preview=False)

from hzcloud.executors.pulumi import load_stack_module  # noqa: E402

stack = load_stack_module("bundle_service")


def _build(name: str = "imaging") -> Any:
    return stack.BundleService(
        name,
        stack.ServiceArgs(
            kubeconfig="{}",
            name=name,
            namespace=f"hz-{name}",
            version="1.10.1-1",
            image="hzcloud.local/orthanc:1.10.1-1",
            readiness=stack.Probe(8042),
            liveness=stack.Probe(4242, period=20),
            startup=stack.Probe(8042, failures=24),
            config={"/etc/orthanc/orthanc.json": "{}"},
            env={"S3_BUCKET": "orthanc-dicom"},
            secret_env={"ORTHANC_PG_PASSWORD": "not-a-real-one"},
            ca_pem="-----BEGIN CERTIFICATE-----\n",
            replicas=2,
            ports=(stack.ServicePort("http", 8042, 31001), stack.ServicePort("dicom", 4242, 31002)),
        ),
    )


@pulumi.runtime.test
def test_service_is_a_node_port_on_the_way_ins_ports() -> Any:
    svc = _build()

    def check(spec: Any) -> None:
        assert spec["type"] == "NodePort", "the way in routes to NodePorts; no LoadBalancer"
        ports = {p["name"]: (p["port"], p["target_port"], p["node_port"]) for p in spec["ports"]}
        assert ports == {"http": (8042, 8042, 31001), "dicom": (4242, 4242, 31002)}

    return svc.service.spec.apply(check)


@pulumi.runtime.test
def test_container_is_pinned_never_pulled_limited_and_unprivileged() -> Any:
    svc = _build()

    def check(spec: Any) -> None:
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "hzcloud.local/orthanc:1.10.1-1"
        assert container["image_pull_policy"] == "Never", "air-gapped: never pull"
        assert container["resources"]["limits"]["memory"]
        sec = container["security_context"]
        assert sec["run_as_non_root"] is True
        assert sec["allow_privilege_escalation"] is False
        assert sec["read_only_root_filesystem"] is True
        assert pod["automount_service_account_token"] is False
        assert spec["replicas"] == 2
        assert container["startup_probe"]["tcp_socket"]["port"] == 8042
        assert container["startup_probe"]["failure_threshold"] == 24

    return svc.deployment.spec.apply(check)


@pulumi.runtime.test
def test_secrets_reach_the_pod_only_through_the_secret() -> Any:
    svc = _build()

    def check(spec: Any) -> None:
        (container,) = spec["template"]["spec"]["containers"]
        by_name = {e["name"]: e for e in container["env"]}
        assert "value" not in by_name["ORTHANC_PG_PASSWORD"] or not by_name[
            "ORTHANC_PG_PASSWORD"
        ].get("value")
        assert by_name["ORTHANC_PG_PASSWORD"]["value_from"]["secret_key_ref"]["key"] == (
            "ORTHANC_PG_PASSWORD"
        )
        assert by_name["S3_BUCKET"]["value"] == "orthanc-dicom"
        mounts = {m["mount_path"]: m for m in container["volume_mounts"]}
        assert mounts["/etc/orthanc/orthanc.json"]["read_only"] is True
        assert "/etc/hzcloud/ca.crt" in mounts

    return svc.deployment.spec.apply(check)


@pulumi.runtime.test
def test_a_rollout_that_never_gets_ready_fails_at_the_entrys_deadline() -> Any:
    svc = stack.BundleService(
        "late",
        stack.ServiceArgs(
            kubeconfig="{}",
            name="late",
            namespace="hz-late",
            version="2",
            image="hzcloud.local/late:2",
            readiness=stack.Probe(8080),
            liveness=stack.Probe(8080),
            ready_within=210,
        ),
    )

    def check(both: Any) -> None:
        meta, spec = both
        # the Deployment says ProgressDeadlineExceeded and Pulumi stops waiting at the same time
        assert spec["progress_deadline_seconds"] == 210
        assert meta["annotations"]["pulumi.com/timeoutSeconds"] == "210"
        strategy = spec["strategy"]["rolling_update"]
        assert strategy["max_unavailable"] == 0, "the old pods serve until the new ones are ready"

    return pulumi.Output.all(svc.deployment.metadata, svc.deployment.spec).apply(check)
