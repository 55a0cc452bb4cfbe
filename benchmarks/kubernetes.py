"""Benchmark: the kubernetes phase on the lab, then the echo stack through the Automation API.

    python benchmarks/kubernetes.py [--site /path/to/site] [--no-apply] [--keep] [--json]

Runs the kubernetes playbook (as `hzcloud up` does) and again converged, then `up` of
stacks/echo.py (namespace, deployment of the echo image, service), a request to the service's
ClusterIP from a node, a second `up` (no changes) and `destroy`; prints each time.
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

from hzcloud.executors import run_ansible
from hzcloud.executors.pulumi import load_stack_module, outputs, run_pulumi
from hzcloud.model import load_site
from hzcloud.secrets import read_secrets

PROJECT, STACK = "hzcloud-echo", "lab"


def on(
    site: Path, host: str, command: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # the ssh_config hzcloud rendered: the site's key, its known_hosts, user and port
    argv = ["ssh", "-F", str(site / "state" / "ssh_config"), "-o", "BatchMode=yes", host, command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def echo_stack(site: Path, action: str) -> Any:
    """Run `action` of the echo stack with the site's admin kubeconfig; the PhaseResult."""
    echo = load_stack_module("echo")
    kubeconfig = (site / "kubeconfig").read_text()
    artifacts = site / load_site(site).artifacts
    return run_pulumi(
        "echo",
        site / "state",
        PROJECT,
        STACK,
        lambda: echo.program(echo.EchoArgs(kubeconfig=kubeconfig)),
        lambda _e: None,
        artifacts,
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
    for label, action in (("pulumi_up", "up"), ("pulumi_up_again", "up")):
        result = echo_stack(site, action)
        if not result.ok:
            sys.exit(f"pulumi {action} failed: {result.failures}")
        times[f"{label}_s"] = round(result.seconds, 1)
        times[f"{label}_changed"] = result.changed
        if label == "pulumi_up":
            artifacts = site / load_site(site).artifacts
            passphrase = read_secrets(site)["pulumi_passphrase"]
            address = outputs(site / "state", PROJECT, STACK, artifacts, passphrase)["cluster_ip"]
            t0 = time.monotonic()
            times["answer"] = echo_answer(site, agent, address)
            times["answer_s"] = round(time.monotonic() - t0, 1)
    if not args.keep:
        result = echo_stack(site, "destroy")
        times["pulumi_destroy_s"] = round(result.seconds, 1)
        times["pulumi_destroy_changed"] = result.changed
    if args.json:
        print(json.dumps(times, indent=2))
    else:
        for key, value in times.items():
            print(f"{key:26} {value}")


if __name__ == "__main__":
    main()
