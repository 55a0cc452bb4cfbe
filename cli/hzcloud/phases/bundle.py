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

from hzcloud.executors import STOP, STOPPED
from hzcloud.phases import Endpoint, Need, Phase, artifact_needs, artifacts_path

if TYPE_CHECKING:
    from hzcloud.bundle import Entry, LoadedEntry
    from hzcloud.executors import RunContext
    from hzcloud.model import Site
    from hzcloud.outcome import Check, Failure, OnEvent, PhaseResult
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

    return {
        "postgres": port("postgres"),
        "redis": port("redis"),
        "sentinel": port("sentinel"),
        "s3": port("ceph_rgw"),
    }


def credentials(site_dir: Path, entries: list[LoadedEntry]) -> dict[str, str]:
    """Every picked entry's credentials, made in secrets.yaml at the first install."""
    from hzcloud.bundle import secret_keys
    from hzcloud.secrets import ensure_named

    keys = [k for le in entries for k in secret_keys(le.entry).values()]
    return ensure_named(site_dir, keys)


def extravars(
    site: Site, plan: Plan, site_dir: Path, only: set[str] | None = None
) -> dict[str, Any]:
    """What playbooks/bundle.yml (and bundle-purge.yml) read: the needs by secrets.yaml key
    names, never by value; of every picked entry, or of those named in only."""
    from hzcloud.bundle import paas_hosts, secret_keys

    entries: list[dict[str, Any]] = []
    images: list[dict[str, str]] = []
    for le in picked(site, site_dir):
        if only is not None and le.entry.name not in only:
            continue
        e, keys = le.entry, secret_keys(le.entry)
        pg, rd, s3 = e.needs.postgres, e.needs.redis, e.needs.s3
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
                "redis": None
                if rd is None
                else {
                    "user": rd.user,
                    "prefix": rd.prefix,
                    "password_var": keys["needs.redis.password"],
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
        "bundle_images_ssh_config": str(site_dir / "state" / "ssh_config"),
    }


def record_path(state_dir: Path, entry: str) -> Path:
    """The entry as it was last deployed and ready: what a failed upgrade rolls back to."""
    return state_dir / "bundle" / f"{entry}.json"


def last_ready(state_dir: Path, entry: str) -> Entry | None:
    """The entry's version that last became ready on the cluster (none: never, or removed)."""
    import json

    from hzcloud.bundle import Entry

    path = record_path(state_dir, entry)
    try:
        return Entry.model_validate(json.loads(path.read_text())["entry"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # a damaged record: no rollback target, said so
        return None


def _record(state_dir: Path, entry: Entry) -> None:
    import json
    import os

    path = record_path(state_dir, entry.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"version": entry.version, "entry": entry.model_dump(mode="json")}, indent=1)
    )
    os.replace(tmp, path)


@dataclass(frozen=True)
class Service:
    """One picked entry as its stack deploys it."""

    entry: str
    program: Callable[[], None]
    # (path, JSON body) PUT on the service once its stack is up (bundle.Load)
    load: tuple[tuple[str, str], ...] = ()
    spec: Entry | None = None  # the bundle entry it was made from


def services(
    site: Site,
    plan: Plan,
    site_dir: Path,
    secrets: dict[str, str],
    only: set[str] | None = None,
    entries: list[Entry] | None = None,
) -> list[Service]:
    """The inline program of each picked entry's stack (or of the entries named in only; or of
    the given entries, e.g. the last version that was ready, for a rollback)."""
    from hzcloud import bundle, wayin
    from hzcloud.executors.pulumi import load_stack_module
    from hzcloud.pki import ca_cert_path

    stack = load_stack_module("bundle_service")
    kubeconfig = (site_dir / "kubeconfig").read_text()
    ca_pem = ca_cert_path(site_dir).read_text()
    routes = wayin.routes(site, plan, site_dir)
    out: list[Service] = []
    for e in entries if entries is not None else [le.entry for le in picked(site, site_dir)]:
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
            ready_within=bundle.ready_within(e),
        )
        out.append(Service(e.name, _program(stack, args), rendered.load, e))
    return out


def _program(stack: Any, args: Any) -> Callable[[], None]:
    def program() -> None:
        stack.program(args)

    return program


def _run(phase: Phase, ctx: RunContext, on_event: OnEvent) -> PhaseResult:
    """The needs through Ansible, then each service's stack; stops at the first failure."""
    from hzcloud.executors.ansible import run_ansible
    from hzcloud.executors.pulumi import run_pulumi
    from hzcloud.outcome import Event, Failure, PhaseResult
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

    def deploy(svc: Service) -> PhaseResult:
        return run_pulumi(
            phase.name,
            ctx.state_dir,
            project_of(svc.entry),
            plan.site,
            svc.program,
            on_event,
            artifacts_path(site, site_dir),
            passphrase,
        )

    def deploy_ready(svc: Service) -> PhaseResult:
        """The stack, then its Deployment rolled out: Pulumi's own wait has returned before the
        new pods were ready (a roll back to a ReplicaSet the Deployment had before)."""
        res = deploy(svc)
        if not res.ok or svc.spec is None:
            return res
        late = rolled_out(site, site_dir, svc.spec)
        if late is None:
            return res
        return PhaseResult(
            phase.name, False, res.changed, res.seconds, res.hosts, (Failure("", svc.entry, late),)
        )

    for svc in services(site, plan, site_dir, secrets):
        assert svc.spec is not None
        before = last_ready(ctx.state_dir, svc.entry)
        if before is not None:
            # pods still starting (a power cut, a node back) are waited for before the stack's
            # refresh: pulumi-kubernetes judges readiness when it reads an object
            # (pulumi/pulumi-kubernetes#3129), and one read not ready is "updated" with the very
            # spec it has: a change reported where there was none. Not ready in time: the
            # update goes ahead and says so.
            on_event(Event(phase.name, "task", task=f"Wait for {svc.entry}'s pods to be ready"))
            rolled_out(site, site_dir, before, absent_ok=True)
        res = deploy_ready(svc)
        if not res.ok:
            failures = res.failures
            # stopped by the operator (the failures say so): no roll back; the next `up` resumes
            if before is not None and before != svc.spec and not STOP.is_set():
                failures = _roll_back(site, plan, site_dir, secrets, svc, before, res, deploy_ready)
                changed += 1
            return PhaseResult(
                phase.name, False, changed, time.monotonic() - started, needs.hosts, failures
            )
        changed += res.changed
        if svc.load:
            loaded, failures = load(site, plan, site_dir, svc, on_event)
            if failures:
                return PhaseResult(
                    phase.name, False, changed, time.monotonic() - started, needs.hosts, failures
                )
            changed += loaded
        _record(ctx.state_dir, svc.spec)
    return PhaseResult(phase.name, True, changed, time.monotonic() - started, needs.hosts)


def rolled_out(
    site: Site, plan_site_dir: Path, entry: Entry, absent_ok: bool = False
) -> str | None:
    """Wait, up to the entry's ready_within, until its Deployment has rolled out as
    `kubectl rollout status` sees it: the spec observed, every replica updated, ready and
    available, no old pod left. None when it has (or, with absent_ok, when the cluster has no
    such Deployment); else what was seen."""
    import json

    from hzcloud.bundle import ready_within
    from hzcloud.wayin import namespace_of

    deadline = ready_within(entry)
    stop = time.monotonic() + deadline
    seen = "no answer from the cluster"
    while True:
        rc, text = _kubectl(
            site,
            plan_site_dir,
            "-n",
            namespace_of(entry.name),
            "get",
            "deployment",
            entry.name,
            "-o",
            "json",
        )
        if rc == 0:
            dep = json.loads(text)
            want = dep["spec"].get("replicas", 1)
            st = dep.get("status", {})
            counts = {
                k: st.get(k, 0)
                for k in ("updatedReplicas", "readyReplicas", "availableReplicas", "replicas")
            }
            if st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0) and all(
                v == want for v in counts.values()
            ):
                return None
            seen = ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {want}"
        elif absent_ok and "NotFound" in text:
            return None
        if time.monotonic() > stop:
            return f"not rolled out within {deadline} s: {seen}"
        if STOP.wait(2):  # the operator stopped `up`
            return STOPPED


def _roll_back(
    site: Site,
    plan: Plan,
    site_dir: Path,
    secrets: dict[str, str],
    svc: Service,
    before: Entry,
    failed: PhaseResult,
    deploy: Callable[[Service], PhaseResult],
) -> tuple[Failure, ...]:
    """The new version never became ready: its stack again with the entry that last was. The
    old pods kept serving all along (maxUnavailable 0); this retires the new ReplicaSet."""
    from hzcloud import bundle
    from hzcloud.outcome import Failure

    assert svc.spec is not None
    new, old = svc.spec.version, before.version
    why = failed.failures[0].message if failed.failures else "its stack failed"
    back = deploy(services(site, plan, site_dir, secrets, entries=[before])[0])
    said = f"{svc.entry} {new} was not ready within {bundle.ready_within(svc.spec)} s ({why}); "
    if back.ok:
        said += f"rolled back to {old}, which serves as before"
    else:
        said += f"rolling back to {old} failed too: " + (
            back.failures[0].message if back.failures else "its stack failed"
        )
    return (Failure("", f"upgrade {svc.entry} {old} -> {new}", said),)


# How long the installer waits for a service to take its resources: the stack waited for the
# pods to be ready when it changed them; after a power cut it did not, and the JVM of HAPI FHIR
# took 330 s to start on a loaded lab.
LOAD_DEADLINE = 600.0


def load(
    site: Site,
    plan: Plan,
    site_dir: Path,
    svc: Service,
    on_event: OnEvent,
    deadline: float = LOAD_DEADLINE,
) -> tuple[int, tuple[Failure, ...]]:
    """PUT each of the service's resources by its path, through its NodePort (as verify does).
    Idempotent: a resource the service already holds unchanged keeps its version (HAPI FHIR
    makes no new version for an identical PUT); counted changed only when its version moved."""
    import json
    import urllib.error
    import urllib.request

    from hzcloud import wayin
    from hzcloud.outcome import Event, Failure

    nodes = plan.hosts("k8s-server") + plan.hosts("k8s-agent")
    route = next((r for r in wayin.routes(site, plan, site_dir) if r.name == svc.entry), None)
    if route is None or not nodes:
        return 0, (Failure("", f"load {svc.entry}", "the service has no HTTPS route"),)
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

    def version(url: str, method: str, body: bytes | None) -> str | None:
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return str(json.load(res).get("meta", {}).get("versionId", ""))
        except urllib.error.HTTPError as exc:
            if method == "GET" and exc.code in (404, 410):
                return None
            raise

    changed = 0
    for path, body in svc.load:
        stop = time.monotonic() + deadline
        attempt = 0
        while True:
            node = nodes[attempt % len(nodes)]
            url = f"http://{node.address}:{route.node_port}{path}"
            attempt += 1
            try:
                before = version(url, "GET", None)
                after = version(url, "PUT", body.encode())
                break
            except urllib.error.HTTPError as exc:
                said = exc.read()[:500].decode(errors="replace")
                if exc.code < 500 or time.monotonic() > stop:
                    return changed, (Failure(node.name, f"load {path}", f"{exc.code}: {said}"),)
            except OSError as exc:
                if time.monotonic() > stop:
                    return changed, (Failure(node.name, f"load {path}", str(exc)),)
            time.sleep(5)
        kind = "changed" if before != after else "ok"
        changed += before != after
        on_event(Event("bundle", kind, node.name, f"load {path}", f"version {after}"))
    return changed, ()


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

    from hzcloud.errors import HzError, UsageError
    from hzcloud.wayin import namespace_of

    if not (site_dir / "kubeconfig").is_file():
        raise HzError(
            f"cannot ask the cluster: {site_dir / 'kubeconfig'} is missing",
            "the kubernetes phase writes it once the cluster is deployed",
            f"run `hzcloud up {site_dir}` (its journal says where it stands: `hzcloud status`)",
        )
    kubectl = artifacts_path(site, site_dir) / "bin" / "kubectl"
    if not kubectl.is_file():
        raise UsageError(
            f"{kubectl} is missing (the status asks the cluster with it)",
            "nothing was asked",
            f"build the artifacts with `scripts/build-artifacts {kubectl.parent.parent}`, "
            "or set `artifacts:` in site.yaml",
        )
    eps = _endpoints(site, plan, site_dir)
    out: list[dict[str, Any]] = []
    unanswered = ""
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
            unanswered = unanswered or (text.strip().splitlines() or ["no answer"])[-1]
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
    return {"ok": not unanswered, "services": out, "error": unanswered or None}


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


def purge_list(site: Site, plan: Plan, site_dir: Path) -> list[dict[str, Any]]:
    """What `bundle remove --purge` deletes, per picked service, beyond its workloads."""
    from hzcloud.bundle import secret_keys
    from hzcloud.secrets import secret_names

    held = secret_names(site_dir)
    out: list[dict[str, Any]] = []
    for le in picked(site, site_dir):
        e = le.entry
        deletes: list[str] = []
        if e.needs.postgres is not None:
            deletes.append(
                f"PostgreSQL database {e.needs.postgres.database} (every table in it) "
                f"and its role {e.needs.postgres.role}"
            )
        if e.needs.redis is not None:
            deletes.append(
                f"every Redis key under {e.needs.redis.prefix} and the ACL user "
                f"{e.needs.redis.user} (on every Redis server and Sentinel)"
            )
        if e.needs.s3 is not None:
            deletes.append(
                f"S3 bucket {e.needs.s3.bucket} with every object in it, "
                f"and its S3 user {s3_user(e.name)}"
            )
        keys = [k for k in secret_keys(e).values() if k in held]
        if keys:
            deletes.append(f"its credentials in secrets.yaml: {', '.join(keys)}")
        out.append({"name": e.name, "deletes": deletes})
    return out


def remove(
    site: Site,
    plan: Plan,
    site_dir: Path,
    on_event: OnEvent,
    purge: bool = False,
    only: set[str] | None = None,
) -> PhaseResult:
    """Each picked service's workloads destroyed; with purge also its database and role, its
    bucket with its objects and its S3 user, and its credentials. Without purge all of those
    stay, so an install later finds the service's data as it was."""
    from hzcloud.bundle import secret_keys
    from hzcloud.executors.ansible import run_ansible
    from hzcloud.executors.pulumi import run_pulumi
    from hzcloud.outcome import PhaseResult
    from hzcloud.secrets import forget_named, read_secrets

    started = time.monotonic()
    state_dir = site_dir / "state"
    passphrase = read_secrets(site_dir)["pulumi_passphrase"]
    changed = 0
    entries = [le for le in picked(site, site_dir) if only is None or le.entry.name in only]
    for le in entries:
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
        record_path(state_dir, le.entry.name).unlink(missing_ok=True)
    if not purge:
        return PhaseResult("bundle", True, changed, time.monotonic() - started)
    data = run_ansible(
        "bundle-purge",
        state_dir,
        on_event,
        name="bundle",
        extravars=extravars(site, plan, site_dir, only),
    )
    if not data.ok:
        return data
    changed += data.changed
    gone = forget_named(site_dir, [k for le in entries for k in secret_keys(le.entry).values()])
    return PhaseResult("bundle", True, changed + len(gone), time.monotonic() - started, data.hosts)


PHASE = Phase(
    name="bundle",
    description="clinical services: their needs (Ansible), then one Pulumi stack each",
    executor="ansible+pulumi",
    # platform: the cluster DNS that answers the pods' postgres.<domain> and s3.<domain>.
    # Not cloud: a tenant that cannot be reached must not keep the hospital's services from
    # being installed (the cloud phase fails alone; its bucket layer copies the imaging bucket
    # once it exists)
    depends_on=("storage", "data", "kubernetes", "platform"),
    wanted=lambda site: bool(site.bundle.services),
    needs=_needs,
    run=_run,
    endpoints=_endpoints,
)
