"""bundle: the clinical services on the cluster, their state in PostgreSQL, Redis and S3.

Two executors in order, so the phase runs itself (Phase.run): the playbook playbooks/bundle.yml
provisions each picked entry's needs (a database and its role, an S3 user and its bucket) and
imports its images on the Kubernetes nodes; then one Pulumi stack per entry (project
hzcloud-bundle-<entry>, stack <site code>) deploys its workloads from stacks/bundle_service.py.
Credentials are made once in secrets.yaml (bundle_<entry>_*) and never made anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzcloud.phases import Endpoint, Need, Phase, artifact_needs, artifacts_path

if TYPE_CHECKING:
    from hzcloud.bundle import LoadedEntry
    from hzcloud.executors import RunContext
    from hzcloud.model import Site
    from hzcloud.outcome import Check, OnEvent, PhaseResult
    from hzcloud.plan import Plan

PULUMI_BINARIES = ("bin/pulumi", "bin/pulumi-resource-kubernetes")


def project_of(entry: str) -> str:
    """The Pulumi project of one service: its stack is the site's code."""
    return f"hzcloud-bundle-{entry}"


def s3_user(entry: str) -> str:
    return f"hz-{entry}"


def picked(site: Site, site_dir: Path) -> list[LoadedEntry]:
    from hzcloud.bundle import bundle_for_site
    from hzcloud.bundle import picked as picked_entries

    return picked_entries(site, bundle_for_site(site, site_dir))


def _needs(site: Site, site_dir: Path) -> list[Need]:
    images = [i.archive for le in picked(site, site_dir) for i in le.entry.images]
    return artifact_needs(site, site_dir, PULUMI_BINARIES, "Pulumi") + [
        Need(
            f"the bundle's image {archive}",
            artifacts_path(site, site_dir) / archive,
            f"build it with `scripts/build-bundle-images {artifacts_path(site, site_dir)}`",
        )
        for archive in images
    ]


def _ports() -> dict[str, int]:
    from hzcloud.phases import port

    return {"postgres": port("postgres"), "redis": port("redis"), "s3": port("ceph_rgw")}


def credentials(site_dir: Path, entries: list[LoadedEntry]) -> dict[str, str]:
    """Every picked entry's credentials, made in secrets.yaml at the first install."""
    from hzcloud.bundle import secret_keys
    from hzcloud.secrets import ensure_named

    keys = [k for le in entries for k in secret_keys(le.entry).values()]
    return ensure_named(site_dir, keys)


def extravars(site: Site, plan: Plan, site_dir: Path) -> dict[str, Any]:
    """What playbooks/bundle.yml reads: the needs by secrets.yaml key names, never by value."""
    from hzcloud.bundle import paas_hosts, secret_keys

    entries: list[dict[str, Any]] = []
    images: list[dict[str, str]] = []
    for le in picked(site, site_dir):
        e, keys = le.entry, secret_keys(le.entry)
        pg, s3 = e.needs.postgres, e.needs.s3
        entries.append(
            {
                "name": e.name,
                "postgres": None
                if pg is None
                else {
                    "database": pg.database,
                    "role": pg.role,
                    "password_var": keys["needs.postgres.password"],
                },
                "s3": None
                if s3 is None
                else {
                    "bucket": s3.bucket,
                    "user": s3_user(e.name),
                    "access_key_var": keys["needs.s3.access_key"],
                    "secret_key_var": keys["needs.s3.secret_key"],
                },
            }
        )
        images += [{"ref": i.ref, "file": i.archive} for i in e.images]
    hosts, ports = paas_hosts(site, plan, by_name=False), _ports()  # Ansible on the nodes
    return {
        "bundle_needs_entries": entries,
        "bundle_needs_postgres_host": hosts["postgres"],
        # the control node makes buckets: by an RGW's address, whatever pods use
        "bundle_needs_s3_endpoint": f"http://{plan.hosts('ceph-rgw')[0].address}:{ports['s3']}"
        if plan.hosts("ceph-rgw")
        else "",
        "bundle_images_list": images,
        "bundle_images_artifacts_dir": str(artifacts_path(site, site_dir)),
    }


@dataclass(frozen=True)
class Service:
    """One picked entry as its stack deploys it."""

    entry: str
    program: Callable[[], None]


def services(
    site: Site, plan: Plan, site_dir: Path, secrets: dict[str, str], only: set[str] | None = None
) -> list[Service]:
    """The inline program of each picked entry's stack (or of the entries named in only)."""
    from hzcloud import bundle, wayin
    from hzcloud.executors.pulumi import load_stack_module
    from hzcloud.pki import ca_cert_path

    stack = load_stack_module("bundle_service")
    kubeconfig = (site_dir / "kubeconfig").read_text()
    ca_pem = ca_cert_path(site_dir).read_text()
    routes = wayin.routes(site, plan, site_dir)
    out: list[Service] = []
    for le in picked(site, site_dir):
        e = le.entry
        if only is not None and e.name not in only:
            continue
        rendered = bundle.render_entry(e, bundle.values(site, plan, e, secrets, _ports()))
        ports = []
        for r in routes:
            if r.namespace != wayin.namespace_of(e.name):
                continue
            # a port name is a DNS label of at most 15: "http" for HTTPS, else the TCP entry's
            pname = "http" if r.kind == "https" else r.name.removeprefix(f"{e.name}-")[:15]
            ports.append(stack.ServicePort(pname, r.target, r.node_port))

        def probe(p: Any) -> Any:
            if p is None:
                return None
            port, path = (p.http.port, p.http.path) if p.http else (p.tcp.port, "")
            return stack.Probe(port, path, p.period, p.timeout, p.failures)

        args = stack.ServiceArgs(
            kubeconfig=kubeconfig,
            name=e.name,
            namespace=wayin.namespace_of(e.name),
            version=e.version,
            image=e.images[0].ref,
            init_images=tuple(i.ref for i in e.images[1:]),
            readiness=probe(e.probes.readiness),
            liveness=probe(e.probes.liveness),
            startup=probe(e.probes.startup),
            config=rendered.config,
            env=rendered.env,
            secret_env=rendered.secret_env,
            ca_pem=ca_pem,
            ca_path=bundle.CA_FILE,
            requests=e.resources.requests.model_dump(),
            limits=e.resources.limits.model_dump(),
            replicas=e.replicas,
            ports=tuple(ports),
        )
        out.append(Service(e.name, _program(stack, args)))
    return out


def _program(stack: Any, args: Any) -> Callable[[], None]:
    def program() -> None:
        stack.program(args)

    return program


def _run(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    """The needs through Ansible, then each service's stack; stops at the first failure."""
    from hzcloud.executors.ansible import run_ansible
    from hzcloud.executors.pulumi import run_pulumi
    from hzcloud.outcome import PhaseResult
    from hzcloud.secrets import read_secrets

    started = time.monotonic()
    site, plan, site_dir = ctx.site, ctx.plan, ctx.site_dir
    secrets = credentials(site_dir, picked(site, site_dir))
    needs = run_ansible(
        "bundle",
        ctx.state_dir,
        on_event,
        name=phase.name,
        extravars=extravars(site, plan, site_dir),
    )
    if not needs.ok:
        return needs
    changed = needs.changed
    passphrase = read_secrets(site_dir)["pulumi_passphrase"]
    for svc in services(site, plan, site_dir, secrets):
        res = run_pulumi(
            phase.name,
            ctx.state_dir,
            project_of(svc.entry),
            plan.site,
            svc.program,
            on_event,
            artifacts_path(site, site_dir),
            passphrase,
        )
        if not res.ok:
            return PhaseResult(
                phase.name, False, changed, time.monotonic() - started, needs.hosts, res.failures
            )
        changed += res.changed
    return PhaseResult(phase.name, True, changed, time.monotonic() - started, needs.hosts)


def _endpoints(site: Site, plan: Plan, site_dir: Path) -> list[Endpoint]:
    """Each picked service on the way in, verified against the site CA."""
    from hzcloud import wayin
    from hzcloud.pki import ca_cert_path

    names = {wayin.namespace_of(le.entry.name) for le in picked(site, site_dir)}
    ca = str(ca_cert_path(site_dir))
    return [
        Endpoint(r.name, r.url, ca)
        for r in wayin.routes(site, plan, site_dir)
        if r.namespace in names
    ]


def _kubectl(site: Site, site_dir: Path, *argv: str) -> tuple[int, str]:
    """kubectl of the artifacts folder with the site's admin kubeconfig (reads only)."""
    import subprocess

    kubectl = artifacts_path(site, site_dir) / "bin" / "kubectl"
    res = subprocess.run(
        [str(kubectl), f"--kubeconfig={site_dir / 'kubeconfig'}", "--request-timeout=10s", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.returncode, res.stdout if res.returncode == 0 else res.stderr


def status(site: Site, plan: Plan, site_dir: Path) -> dict[str, Any]:
    """`bundle status`: each picked service, the version it runs, its state and endpoints."""
    import json

    eps = _endpoints(site, plan, site_dir)
    out: list[dict[str, Any]] = []
    from hzcloud.wayin import namespace_of

    for le in picked(site, site_dir):
        e = le.entry
        rc, text = _kubectl(
            site, site_dir, "-n", namespace_of(e.name), "get", "deployment", e.name, "-o", "json"
        )
        version, state = e.version, "not installed"
        if rc == 0:
            dep = json.loads(text)
            labels = dep["spec"]["template"]["metadata"].get("labels", {})
            version = labels.get("app.kubernetes.io/version", version)
            want = dep["spec"].get("replicas", 0)
            st = dep.get("status", {})
            ready, updated = st.get("readyReplicas", 0), st.get("updatedReplicas", 0)
            state = (
                "ready"
                if ready >= want and updated >= want
                else "degraded"
                if ready > 0
                else "down"
            )
        elif "NotFound" not in text:
            state = "unknown"
        out.append(
            {
                "name": e.name,
                "version": version,
                "state": state,
                "endpoints": [
                    {"name": ep.name, "url": ep.url, "ca": ep.ca}
                    for ep in eps
                    if ep.name == e.name or ep.name.startswith(f"{e.name}-")
                ],
            }
        )
    return {"services": out}


def verify(site: Site, plan: Plan, site_dir: Path) -> list[Check]:
    """Each picked entry's checks against its NodePorts on every Kubernetes node (the way in
    routes to the same ports)."""
    import socket
    import urllib.error
    import urllib.request

    from hzcloud import wayin
    from hzcloud.outcome import Check

    nodes = plan.hosts("k8s-server") + plan.hosts("k8s-agent")
    routes = wayin.routes(site, plan, site_dir)
    out: list[Check] = []
    for le in picked(site, site_dir):
        e = le.entry
        mine = {r.name: r for r in routes if r.namespace == wayin.namespace_of(e.name)}
        for node in nodes:
            for check in e.checks:
                if check.http is not None and e.name in mine:
                    url = f"http://{node.address}:{mine[e.name].node_port}{check.http.path}"
                    try:
                        with urllib.request.urlopen(url, timeout=5) as res:
                            code = res.status
                    except urllib.error.HTTPError as exc:
                        code = exc.code
                    except OSError as exc:
                        code, url = 0, f"{url}: {exc}"
                    out.append(
                        Check(
                            f"{e.name} {check.name}",
                            node.name,
                            code == check.http.status,
                            f"{url} -> {code}",
                            str(check.http.status),
                        )
                    )
                elif check.tcp is not None and f"{e.name}-{check.tcp.port}" in mine:
                    r = mine[f"{e.name}-{check.tcp.port}"]
                    try:
                        socket.create_connection((node.address, r.node_port), timeout=5).close()
                        ok, seen = True, "open"
                    except OSError as exc:
                        ok, seen = False, str(exc)
                    out.append(
                        Check(
                            f"{e.name} {check.name}",
                            node.name,
                            ok,
                            f"{node.address}:{r.node_port} {seen}",
                            "open",
                        )
                    )
    return out


def remove(site: Site, plan: Plan, site_dir: Path, on_event: OnEvent) -> PhaseResult:
    """Each picked service's workloads destroyed; its database, bucket and credentials kept."""
    from hzcloud.executors.pulumi import run_pulumi
    from hzcloud.outcome import PhaseResult
    from hzcloud.secrets import read_secrets

    started = time.monotonic()
    state_dir = site_dir / "state"
    passphrase = read_secrets(site_dir)["pulumi_passphrase"]
    changed = 0
    for le in picked(site, site_dir):
        res = run_pulumi(
            "bundle",
            state_dir,
            project_of(le.entry.name),
            plan.site,
            lambda: None,
            on_event,
            artifacts_path(site, site_dir),
            passphrase,
            action="destroy",
        )
        if not res.ok:
            return res
        changed += res.changed
    return PhaseResult("bundle", True, changed, time.monotonic() - started)


PHASE = Phase(
    name="bundle",
    description="clinical services: their needs (Ansible), then one Pulumi stack each",
    executor="ansible+pulumi",
    # platform: the cluster DNS that answers the pods' postgres.<domain> and s3.<domain>
    depends_on=("storage", "data", "kubernetes", "platform", "cloud"),
    wanted=lambda site: bool(site.bundle.services),
    needs=_needs,
    run=_run,
    endpoints=_endpoints,
)
