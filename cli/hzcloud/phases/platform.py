"""platform: what hzcloud itself runs on the cluster, through Pulumi (stacks/echo.py).

Today that is the canary: the echo service in its own namespace, which proves that the
cluster schedules pods from images of the artifacts folder and routes to them. `verify`
asks it for an answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hzcloud.outcome import Check
from hzcloud.phases import CheckContext, Need, Phase, artifact_needs

if TYPE_CHECKING:
    from hzcloud.model import Site
    from hzcloud.plan import Plan

PULUMI_BINARIES = ("bin/pulumi", "bin/pulumi-resource-kubernetes")
CANARY_NAMESPACE = "hz-echo"


def _needs(site: Site, site_dir: Path) -> list[Need]:
    return artifact_needs(site, site_dir, PULUMI_BINARIES, "Pulumi")


def _program(site: Site, plan: Plan, site_dir: Path) -> Callable[[], None]:
    from hzcloud.executors.pulumi import load_stack_module

    echo = load_stack_module("echo")
    kubeconfig = site_dir / "kubeconfig"

    def program() -> None:
        echo.program(echo.EchoArgs(kubeconfig=kubeconfig.read_text(), namespace=CANARY_NAMESPACE))

    return program


def _checks(ctx: CheckContext) -> list[Check]:
    """The canary answers by its service's ClusterIP, asked from the first Kubernetes server."""
    from hzcloud.phases.kubernetes import KUBECTL

    hosts, plan = ctx.hosts, ctx.plan
    if not plan.hosts("k8s-server"):
        return []
    first = plan.hosts("k8s-server")[0].name
    out: list[Check] = []
    ip = hosts[first].run(
        f"{KUBECTL} -n {CANARY_NAMESPACE} get service echo -o jsonpath={{.spec.clusterIP}}"
    )
    address = ip.stdout.strip()
    answer = hosts[first].run(
        "python3 -c 'import urllib.request as u;"
        f'print(u.urlopen("http://{address}/", timeout=5).read().decode())\''
    )
    out.append(
        Check(
            "the echo canary answers by its service",
            first,
            bool(address) and answer.stdout.startswith("hzcloud-echo "),
            f"http://{address}/ -> {(answer.stdout or answer.stderr).strip()[:100]}",
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
