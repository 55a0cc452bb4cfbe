"""platform: what hzcloud itself runs on the cluster, through Pulumi (stacks/echo.py).

Today that is the canary: the echo service in its own namespace, which proves that the
cluster schedules pods from images of the artifacts folder and routes to them. `verify`
asks it for an answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hzcloud.phases import Need, Phase, artifact_needs

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


PHASE = Phase(
    name="platform",
    description="hzcloud's own workloads on the cluster (the echo canary), through Pulumi",
    executor="pulumi",
    depends_on=("kubernetes",),
    wanted=lambda site: site.services.kubernetes.enabled,
    needs=_needs,
    program=_program,
)
