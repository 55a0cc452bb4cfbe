"""Benchmark: the kubernetes phase on the lab, then the platform phase (the echo canary, Pulumi).

    python benchmarks/kubernetes.py [--site /path/to/site] [--no-apply] [--keep] [--json]

Runs the kubernetes playbook (as `hzcloud up` does) and again converged, then the platform
phase's stack (namespace, deployment of the echo image, service) from nothing, a request to the
service's ClusterIP from a node, a second `up` (no changes); `destroy` last unless --keep (then
`hzcloud up --only platform` brings it back); prints each time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from hzcloud import engine
from hzcloud import phases as registry
from hzcloud.executors.ansible import run_ansible
from hzcloud.executors.pulumi import outputs, project_of, run_pulumi
from hzcloud.model import load_site
from hzcloud.secrets import read_secrets

PROJECT = project_of("platform")


def on(
    site: Path, host: str, command: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # the ssh_config hzcloud rendered: the site's key, its known_hosts, user and port
    argv = ["ssh", "-F", str(site / "state" / "ssh_config"), "-o", "BatchMode=yes", host, command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def echo_stack(site: Path, action: str) -> Any:
    """Run `action` of the platform phase's stack, as `hzcloud up` runs it; the PhaseResult."""
    loaded = engine.load(site)
    phase = registry.phase("platform")
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


def echo_answer(site: Path, host: str, address: str, tries: int = 60) -> str:
    """GET http://<ClusterIP>/ from a node (python3: the nodes have no curl)."""
    probe = (
        'python3 -c "import urllib.request as u; '
        f"print(u.urlopen('http://{address}/', timeout=3).read().decode())\""
    )
    for _ in range(tries):
        res = on(site, host, probe)
        if res.returncode == 0:
            return res.stdout.strip()
        time.sleep(1)
    raise RuntimeError(f"no answer from {address} on {host}: {res.stderr.strip()[-300:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=Path("lab"))
    parser.add_argument("--no-apply", action="store_true", help="skip the kubernetes phase")
    parser.add_argument("--keep", action="store_true", help="leave the echo stack up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    site = args.site.resolve()
    times: dict[str, Any] = {}
    if not args.no_apply:
        for label in ("apply", "reapply"):
            result = run_ansible("kubernetes", site / "state", lambda _e: None)
            if not result.ok:
                sys.exit(f"kubernetes phase failed: {result.failures}")
            times[f"phase_{label}_s"] = round(result.seconds, 1)
            times[f"phase_{label}_changed"] = result.changed
    first = yaml.safe_load((site / "state" / "inventory.yml").read_text())["all"]
    server = next(iter(first["children"]["k8s_server"]["hosts"]))
    agent = next(iter(first["children"]["k8s_agent"]["hosts"] or {server: None}))
    echo_stack(site, "destroy")  # from nothing (the platform phase of `up` may have made it)
    for label, action in (("pulumi_up", "up"), ("pulumi_up_again", "up")):
        result = echo_stack(site, action)
        if not result.ok:
            sys.exit(f"pulumi {action} failed: {result.failures}")
        times[f"{label}_s"] = round(result.seconds, 1)
        times[f"{label}_changed"] = result.changed
        if label == "pulumi_up":
            artifacts = site / load_site(site).artifacts
            passphrase = read_secrets(site)["pulumi_passphrase"]
            stack = engine.load(site).plan.site
            address = outputs(site / "state", PROJECT, stack, artifacts, passphrase)["cluster_ip"]
            t0 = time.monotonic()
            times["answer"] = echo_answer(site, agent, address)
            times["answer_s"] = round(time.monotonic() - t0, 1)
    if not args.keep:
        result = echo_stack(site, "destroy")
        times["pulumi_destroy_s"] = round(result.seconds, 1)
        times["pulumi_destroy_changed"] = result.changed
        echo_stack(site, "up")  # the site as `up` left it
    if args.json:
        print(json.dumps(times, indent=2))
    else:
        for key, value in times.items():
            print(f"{key:26} {value}")


if __name__ == "__main__":
    main()
