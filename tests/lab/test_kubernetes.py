"""The kubernetes phase for real on the lab, then the platform phase (the echo canary, through
Pulumi's Automation API inside `hzcloud up`).

Needs a lab whose plan has the kubernetes phase and an artifacts folder: HZCLOUD_ARTIFACTS
(scripts/test sets it and starts its build) is linked into the site and built if needed
(scripts/build-artifacts + scripts/build-images, cached); else the site's own folder is used:

    HZCLOUD_LAB_SITE=/work/lab-kube HZCLOUD_LAB_PHASES=preflight,base HZCLOUD_LAB_KEEP=1 \
        pytest -m lab tests/lab/test_kubernetes.py

The module fixture runs `hzcloud up --only kubernetes,platform` after the session's
`converged_site`, unless HZCLOUD_LAB_PHASES already has them (in CI test_site.py ran them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hzrun
import pytest
import yaml

from hzcloud import engine
from hzcloud import phases as registry
from hzcloud.executors.pulumi import outputs, run_pulumi
from hzcloud.model import load_site
from hzcloud.outcome import PhaseResult
from hzcloud.secrets import read_secrets

pytestmark = pytest.mark.lab

HZ = [sys.executable, "-m", "hzcloud"]
PROJECT = (
    "hzcloud-platform"  # the platform phase's stack: project hzcloud-<phase>, stack = site code
)
# as in conftest.py: the phases the session's `converged_site` ran
LAB_PHASES = os.environ.get("HZCLOUD_LAB_PHASES", "preflight,base,storage,data")


def up_kubernetes(site: Path) -> dict[str, Any]:
    return hzrun.up_json(site, "kubernetes,platform")[1]


@pytest.fixture(scope="module")
def kube_site(converged_site: dict[str, Any], site_artifacts: Path) -> dict[str, Any]:
    """The lab with the kubernetes and platform phases converged; the JSON of that run."""
    site = Path(converged_site["site"])
    if "kubernetes" not in {p["name"] for p in json.loads(_hz("plan", str(site)))["phases"]}:
        pytest.skip("this lab's site has Kubernetes switched off")
    data = up_kubernetes(site)
    data["site"] = str(site)
    return data


def _hz(*args: str) -> str:
    return subprocess.run(
        [*HZ, *args, "--output", "json"], capture_output=True, text=True, check=True
    ).stdout


def kubectl(site: Path, *args: str) -> str:
    artifacts = site / load_site(site).artifacts
    return subprocess.run(
        [str(artifacts / "bin" / "kubectl"), f"--kubeconfig={site / 'kubeconfig'}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def platform_stack(site: Path, action: str) -> PhaseResult:
    """The platform phase's own stack, driven directly (destroy, or up after it)."""
    phase = registry.phase("platform")
    loaded = engine.load(site)
    assert phase.program is not None
    return run_pulumi(
        "platform",
        site / "state",
        PROJECT,
        loaded.plan.site,
        phase.program(loaded.site, loaded.plan, loaded.site_dir),
        lambda _e: None,
        site / loaded.site.artifacts,
        read_secrets(site)["pulumi_passphrase"],
        action=action,
    )


def test_phase_ran_and_left_its_kubeconfig(kube_site: dict[str, Any]) -> None:
    site = Path(kube_site["site"])
    phases = {p["name"]: p for p in kube_site["phases"]}
    assert phases["kubernetes"]["status"] in ("ok", "skipped"), phases
    assert (site / "kubeconfig").stat().st_mode & 0o777 == 0o600
    assert all(k.stat().st_mode & 0o077 == 0 for k in (site / "pki").glob("*.key")), (
        "PKI keys must be 0600"
    )


def test_every_node_of_the_plan_is_ready(kube_site: dict[str, Any]) -> None:
    site = Path(kube_site["site"])
    plan = json.loads(_hz("plan", str(site)))
    want = {n["name"] for n in plan["nodes"] if {"k8s-server", "k8s-agent"} & set(n["roles"])}
    deadline = time.monotonic() + 120
    while True:
        nodes = json.loads(kubectl(site, "get", "nodes", "-o", "json"))["items"]
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
        }
        if ready >= want or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert ready >= want, f"not Ready: {sorted(want - ready)}"


def test_rerun_changes_nothing(kube_site: dict[str, Any]) -> None:
    data = up_kubernetes(Path(kube_site["site"]))
    assert [(p["name"], p["changed"]) for p in data["phases"]] == [
        ("kubernetes", 0),
        ("platform", 0),
    ], data["phases"]


@pytest.fixture(scope="module")
def echo_up(kube_site: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The platform phase of that run: the echo canary deployed through `hzcloud up`."""
    phases = {p["name"]: p for p in kube_site["phases"]}
    return Path(kube_site["site"]), phases["platform"]


def test_platform_phase_ran_through_up(echo_up: tuple[Path, dict[str, Any]]) -> None:
    site, platform = echo_up
    assert platform["status"] == "ok", platform
    assert (site / "state" / "pulumi" / ".pulumi" / "stacks" / PROJECT).is_dir()


def test_echo_service_answers_from_a_node(echo_up: tuple[Path, dict[str, Any]]) -> None:
    site, _ = echo_up
    state = site / "state"
    address = outputs(
        state,
        PROJECT,
        engine.load(site).plan.site,
        site / load_site(site).artifacts,
        read_secrets(site)["pulumi_passphrase"],
    )["cluster_ip"]
    inventory = yaml.safe_load((state / "inventory.yml").read_text())["all"]["children"]
    agents = list((inventory["k8s_agent"].get("hosts") or {}).keys())
    node = (agents or list(inventory["k8s_server"]["hosts"]))[0]
    probe = (
        'python3 -c "import urllib.request as u; '
        f"print(u.urlopen('http://{address}/', timeout=3).read().decode())\""
    )
    pods = set(kubectl(site, "-n", "hz-echo", "get", "pods", "-o", "name").split())
    for _ in range(60):
        res = hzrun.node_run(site, node, probe)
        if res.returncode == 0:
            break
        time.sleep(1)
    assert res.returncode == 0, res.stderr[-500:]
    assert res.stdout.startswith("hzcloud-echo "), res.stdout
    assert f"pod/{res.stdout.split()[1]}" in pods, (res.stdout, pods)


def test_destroy_removes_it_all_and_up_brings_it_back(echo_up: tuple[Path, dict[str, Any]]) -> None:
    site, _ = echo_up
    gone = platform_stack(site, "destroy")
    assert gone.ok, gone.failures
    assert gone.changed >= 5  # component, provider, namespace, deployment, service
    deadline = time.monotonic() + 120
    while "hz-echo" in kubectl(site, "get", "namespaces", "-o", "name"):
        assert time.monotonic() < deadline, "namespace hz-echo still there"
        time.sleep(2)
    back = hzrun.up_json(site, "platform")[1]["phases"]
    assert back[0]["status"] == "ok" and back[0]["changed"] >= 5, back
