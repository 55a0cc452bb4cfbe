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


kubectl = hzrun.kubectl


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
    data, which = hzrun.converged_again(Path(kube_site["site"]), "kubernetes,platform", kube_site)
    print(f"\nkubernetes, platform after a converged run: {which}")
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


# --- Drills: a server's and an agent's power cut (`hzcloud lab kill`: init SIGKILLed, no word to
# the peers), seen by kubectl through the API VIP. The settings they prove are the role's
# defaults (README, "Kubernetes"): leader Lease 6 s / renew 4 s / retry 1 s; a node NotReady
# after 20 s without a status; its pods evicted 10 s after that.
API_VIP_MOVE_MAX = 15.0  # seconds from the power cut to `kubectl get nodes` answering again
POD_EVICTION_MAX = 75.0  # grace 20 s + tolerations 10 s + rescheduling, with room for a busy CI


def kubectl_try(site: Path, *args: str, timeout: float = 3) -> subprocess.CompletedProcess[str]:
    """kubectl through the site kubeconfig's current context (the API VIP), never raising."""
    artifacts = site / load_site(site).artifacts
    try:
        return subprocess.run(
            [
                str(artifacts / "bin" / "kubectl"),
                f"--kubeconfig={site / 'kubeconfig'}",
                f"--request-timeout={timeout:.0f}s",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout + 5,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 124, "", "timed out")


def vip_holder(site: Path) -> str | None:
    """The server holding the API VIP: the holder of the Lease hzcloud-api-vip renews."""
    res = kubectl_try(
        site,
        "-n",
        "kube-system",
        "get",
        "lease",
        "hzcloud-api-vip",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    )
    return res.stdout.split("_")[0] if res.returncode == 0 and res.stdout else None


def ready_nodes(site: Path) -> set[str]:
    res = kubectl_try(site, "get", "nodes", "-o", "json", timeout=5)
    if res.returncode != 0:
        return set()
    return {
        n["metadata"]["name"]
        for n in json.loads(res.stdout)["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }


def echo_pods(site: Path) -> list[dict[str, Any]]:
    """The echo canary's live pods (not terminating): name, node, running and ready."""
    res = kubectl_try(site, "-n", "hz-echo", "get", "pods", "-o", "json", timeout=5)
    if res.returncode != 0:
        return []
    return [
        {
            "name": p["metadata"]["name"],
            "node": p["spec"].get("nodeName"),
            "ready": p["status"].get("phase") == "Running"
            and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}]),
        }
        for p in json.loads(res.stdout)["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]


def all_nodes(site: Path) -> set[str]:
    plan = json.loads(_hz("plan", str(site)))
    return {n["name"] for n in plan["nodes"] if {"k8s-server", "k8s-agent"} & set(n["roles"])}


@pytest.fixture(scope="module")
def drills(echo_up: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """Figures of the drills, shared with the last test (the re-run after the nodes return)."""
    site, _ = echo_up
    want = all_nodes(site)
    hzrun.wait_for("every node Ready", lambda: ready_nodes(site) >= want, 120, every=2)
    return {"site": site, "want": want, "killed": []}


def test_api_vip_holders_power_cut_kubectl_answers_within_15s(drills: dict[str, Any]) -> None:
    site: Path = drills["site"]
    holder = hzrun.wait_for("the API VIP Lease's holder", lambda: vip_holder(site), 30)
    assert kubectl_try(site, "get", "nodes").returncode == 0
    t_kill = time.monotonic()
    hzrun.lab_verb(site, "kill", holder)
    drills["killed"].append(holder)
    tries = 0
    while True:
        tries += 1
        res = kubectl_try(site, "get", "nodes", "-o", "name", timeout=2)
        if res.returncode == 0:
            break
        assert time.monotonic() - t_kill < 60, (
            f"no API through the VIP after {holder}: {res.stderr}"
        )
        time.sleep(0.2)
    took = time.monotonic() - t_kill
    new = vip_holder(site)
    drills["api_vip_move_s"] = round(took, 1)
    print(
        f"\nAPI VIP: {holder} killed -> kubectl answers after {took:.1f} s ({tries} tries), "
        f"new holder {new}"
    )
    assert new and new != holder, f"the Lease still names {holder}"
    assert took <= API_VIP_MOVE_MAX, f"kubectl through the VIP answered after {took:.1f} s"


def move_an_echo_pod_to_an_agent(site: Path, pods: list[dict[str, Any]], agents: set[str]) -> str:
    """Cordon the servers, delete an echo pod on one, uncordon; the agent its successor runs on."""
    servers = sorted({n["name"] for n in hzrun.hosts_with(site, "k8s-server")})
    assert kubectl_try(site, "cordon", *servers, timeout=10).returncode == 0
    try:
        victim = pods[0]["name"]
        # --wait=false: its replacement is what counts (a pod whose node is gone never finishes)
        assert (
            kubectl_try(
                site, "-n", "hz-echo", "delete", "pod", victim, "--wait=false", timeout=30
            ).returncode
            == 0
        )
        moved = hzrun.wait_for(
            "an echo pod ready on an agent",
            lambda: [p for p in echo_pods(site) if p["ready"] and p["node"] in agents],
            90,
        )
    finally:
        assert kubectl_try(site, "uncordon", *servers, timeout=10).returncode == 0
    return str(moved[0]["node"])


def test_lost_agents_echo_pods_run_elsewhere(drills: dict[str, Any]) -> None:
    site: Path = drills["site"]
    agents = {n["name"] for n in hzrun.hosts_with(site, "k8s-agent")}

    def live_pods() -> list[dict[str, Any]] | None:
        # a pod on a node killed by the drill before still says Running until it is evicted
        alive = ready_nodes(site) - set(drills["killed"])
        now = echo_pods(site)
        ready = [p for p in now if p["ready"] and p["node"] in alive]
        return ready if len(ready) >= 2 and len(ready) == len(now) else None

    pods = hzrun.wait_for("2 echo pods ready on live nodes", live_pods, 120)
    on_agents = sorted({p["node"] for p in pods} & agents)
    if not on_agents:  # the scheduler put both on servers: move one to an agent first
        on_agents = [move_an_echo_pod_to_an_agent(site, pods, agents)]
        pods = echo_pods(site)
    victim = on_agents[0]
    t_kill = time.monotonic()
    hzrun.lab_verb(site, "kill", victim)
    drills["killed"].append(victim)

    def replaced() -> list[dict[str, Any]] | None:
        now = echo_pods(site)
        moved = [p for p in now if p["ready"] and p["node"] != victim]
        return now if len(moved) >= len(pods) else None

    now = hzrun.wait_for(f"echo pods off {victim}", replaced, POD_EVICTION_MAX, every=1)
    took = time.monotonic() - t_kill
    drills["pod_eviction_s"] = round(took, 1)
    print(
        f"\nagent {victim} killed -> {len(pods)} echo pods ready elsewhere after {took:.1f} s: "
        f"{sorted(p['node'] for p in now)}"
    )


def test_nodes_return_and_rerun_changes_nothing(drills: dict[str, Any]) -> None:
    site: Path = drills["site"]
    assert drills["killed"], "no drill ran"
    hzrun.lab_verb(site, "up")
    t0 = time.monotonic()
    hzrun.wait_for("every node Ready again", lambda: ready_nodes(site) >= drills["want"], 120, 2)
    back = time.monotonic() - t0
    data = up_kubernetes(site)
    print(
        f"\nnodes {drills['killed']} back and Ready after {back:.1f} s; up: "
        f"{[(p['name'], p['changed'], p['seconds']) for p in data['phases']]}"
    )
    assert [(p["name"], p["changed"]) for p in data["phases"]] == [
        ("kubernetes", 0),
        ("platform", 0),
    ], data["phases"]
