"""The checks that prove a site works, run with testinfra over the rendered SSH config."""

from __future__ import annotations

import json
import os
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hzcloud import phases
from hzcloud.phases.data import SENTINEL_PORT, redis_master_name
from hzcloud.phases.storage import RGW_PORT
from hzcloud.plan import NodePlan, Plan


@dataclass(frozen=True)
class Check:
    """One check on one host: what it expected and what it saw (detail), both plain text."""

    name: str
    host: str
    passed: bool
    detail: str
    expected: str = ""

    @property
    def seen(self) -> str:
        return self.detail

    def line(self) -> str:
        """One readable line: host, check, expected, seen."""
        if self.passed:
            return f"{self.host}: {self.name}: {self.detail}"
        return (
            f"{self.host}: {self.name}: expected {self.expected or 'to pass'}, seen {self.detail}"
        )

    def to_dict(self) -> dict[str, Any]:
        # "name" stays for readers of the first format; "check" is the same value
        return {
            "host": self.host,
            "check": self.name,
            "name": self.name,
            "passed": self.passed,
            "expected": self.expected,
            "seen": self.detail,
        }


def said(exc: BaseException) -> str:
    """What a failed remote command said, in words (never a Python repr of testinfra objects)."""
    arg: Any = exc.args[0] if exc.args else None
    # testinfra's ssh backend raises RuntimeError(CommandResult) when ssh itself fails
    if arg is not None and hasattr(arg, "rc") and hasattr(arg, "stderr"):
        lines = [ln for ln in str(arg.stderr or arg.stdout or "").splitlines() if ln.strip()]
        return f"exit {arg.rc}: {lines[-1].strip()[:200]}" if lines else f"exit {arg.rc}"
    # testinfra's run_expect: "Unexpected exit code 4 for CommandResult(backend=<...>, ...)"
    text = str(exc).split(" for CommandResult(", 1)[0].strip()
    return (text.splitlines()[0][:200] if text else "") or type(exc).__name__


def _names(names: list[str]) -> str:
    return ", ".join(names) or "none"


def host_for(node: NodePlan, state_dir: Path) -> Any:
    import testinfra

    return testinfra.get_host(f"ssh://{node.name}", ssh_config=str(state_dir / "ssh_config"))


def _node_checks(host: Any, node: NodePlan, plan: Plan, deployed: set[str]) -> list[Check]:
    out: list[Check] = []

    def add(name: str, passed: bool, detail: str, expected: str) -> None:
        out.append(Check(name, node.name, passed, detail, expected))

    try:
        host.run("true")
    except Exception as exc:  # testinfra raises backend-specific errors for an unreachable host
        add("reachable", False, said(exc), "answers over SSH")
        return out
    if "base" in deployed:
        tracking = host.run("chronyc -n tracking")
        leap = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in tracking.stdout.splitlines()
                if ln.startswith("Leap status")
            ),
            "unknown",
        )
        add(
            "clock in sync",
            tracking.rc == 0 and leap == "Normal",
            f"chrony leap status {leap}",
            "chrony leap status Normal",
        )
    role_phase = phases.role_phase()
    roles = [r for r in node.roles if role_phase.get(r) in deployed]
    for role in roles:
        for unit in phases.role_services().get(role, ()):
            svc = host.service(unit)
            running, enabled = svc.is_running, svc.is_enabled
            add(
                f"{unit} running and enabled",
                running and enabled,
                f"{'running' if running else 'stopped'} and {'enabled' if enabled else 'disabled'}",
                "running and enabled",
            )
    ss = host.run("ss -Hltn")
    ports = set()
    for line in ss.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3].rsplit(":", 1)[-1].isdigit():
            ports.add(int(parts[3].rsplit(":", 1)[-1]))
    role_ports = {
        role: [p.single for p in listed if p.owners and p.single is not None]
        for role, listed in phases.role_ports().items()
    }
    for role, numbers in role_ports.items():
        if role_phase.get(role) not in deployed:
            continue
        planned = role in node.roles
        for port in numbers:
            # a port listens exactly where the plan put its role
            shared = any(port in role_ports.get(r, []) for r in node.roles if r != role)
            if shared:
                continue
            add(
                f"port {port} ({role})",
                (port in ports) == planned,
                "listening" if port in ports else "closed",
                f"listening ({role} planned here)"
                if planned
                else f"closed ({role} not planned here)",
            )
    return out


def _cluster_checks(
    hosts: dict[str, Any], plan: Plan, secrets: dict[str, str], deployed: set[str]
) -> list[Check]:
    out: list[Check] = []
    if "data" in deployed and plan.hosts("postgres"):
        out += _patroni_checks(hosts, plan)
    if "data" in deployed and plan.hosts("redis-sentinel"):
        first = plan.hosts("redis-sentinel")[0].name
        pw = shlex.quote(secrets.get("redis_password", ""))
        master = redis_master_name(plan.site)
        res = hosts[first].run(
            f"REDISCLI_AUTH={pw} redis-cli -p {SENTINEL_PORT} sentinel ckquorum {master}"
        )
        out.append(
            Check(
                "sentinel quorum",
                first,
                res.stdout.startswith("OK"),
                (res.stdout or res.stderr).strip()[:200] or f"exit {res.rc}, no output",
                "OK from sentinel ckquorum",
            )
        )
        if plan.hosts("redis"):
            out.append(_redis_replicas_check(hosts[first], first, master, pw, plan))
    if "storage" in deployed and plan.hosts("ceph-mon"):
        first = plan.hosts("ceph-mon")[0].name
        res = hosts[first].run("ceph status -f json")
        try:
            st = json.loads(res.stdout)
            health = _ceph_health(st)
            if health != "HEALTH_OK":
                # Right after a deploy or a restart a warning can be passing (slow ops, peering):
                # give the cluster a minute to settle and say what was seen.
                seen, started = health, time.monotonic()
                while time.monotonic() - started < CEPH_SETTLE_SECONDS and health != "HEALTH_OK":
                    time.sleep(3)
                    st = json.loads(hosts[first].run("ceph status -f json").stdout)
                    health = _ceph_health(st)
                if health == "HEALTH_OK":
                    health = f"HEALTH_OK after {time.monotonic() - started:.0f} s (was {seen})"
            quorum = st.get("quorum_names", [])
            osdmap = st["osdmap"].get("osdmap", st["osdmap"])
            osds = (osdmap["num_osds"], osdmap["num_up_osds"], osdmap["num_in_osds"])
            out.append(
                Check("ceph health", first, health.startswith("HEALTH_OK"), health, "HEALTH_OK")
            )
            out.append(
                Check(
                    "ceph mon quorum",
                    first,
                    len(quorum) == len(plan.hosts("ceph-mon")),
                    f"in quorum: {_names(quorum)}",
                    f"all {len(plan.hosts('ceph-mon'))} mons in quorum",
                )
            )
            out.append(
                Check(
                    "ceph osds up and in",
                    first,
                    osds[0] > 0 and osds[0] == osds[1] == osds[2],
                    f"{osds[0]} osds, {osds[1]} up, {osds[2]} in",
                    "every OSD up and in",
                )
            )
        except (ValueError, KeyError, TypeError):
            out.append(
                Check(
                    "ceph health",
                    first,
                    False,
                    f"no status: {(res.stderr or res.stdout).strip()[:200]}",
                    "HEALTH_OK",
                )
            )
        for node in plan.hosts("ceph-rgw"):
            res = hosts[node.name].run(
                "python3 -c 'import urllib.request;"
                f'print(urllib.request.urlopen("http://127.0.0.1:{RGW_PORT}",timeout=5).status)\''
            )
            out.append(
                Check(
                    "S3 endpoint answers",
                    node.name,
                    res.stdout.strip() == "200",
                    f"http://{node.address}:{RGW_PORT} -> "
                    + (
                        res.stdout.strip()
                        or (res.stderr.strip().splitlines() or ["no answer"])[-1][:100]
                    ),
                    f"HTTP 200 from http://{node.address}:{RGW_PORT}",
                )
            )
    if "kubernetes" in deployed and plan.hosts("k8s-server"):
        out += _kubernetes_checks(hosts, plan, deployed)
    return out


KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.kubeconfig"


def _kubernetes_checks(hosts: dict[str, Any], plan: Plan, deployed: set[str]) -> list[Check]:
    """Every node of the plan Ready; with the platform phase, the canary answers by its service."""
    first = plan.hosts("k8s-server")[0].name
    want = {n.name for n in plan.nodes if {"k8s-server", "k8s-agent"} & set(n.roles)}
    res = hosts[first].run(f"{KUBECTL} get nodes -o json")
    try:
        items = json.loads(res.stdout)["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
        }
        detail = f"{len(ready & want)} of {len(want)} Ready" + (
            f"; not Ready: {sorted(want - ready)}" if want - ready else ""
        )
        out = [Check("kubernetes nodes Ready", first, want <= ready, detail)]
    except (ValueError, KeyError, TypeError):
        out = [Check("kubernetes nodes Ready", first, False, (res.stderr or res.stdout)[:200])]
    if "platform" in deployed:
        from hzcloud.phases.platform import CANARY_NAMESPACE

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


# How long `verify` waits for a Ceph warning to clear by itself before it fails the check.
CEPH_SETTLE_SECONDS = 60


def _ceph_health(status: dict[str, Any]) -> str:
    """'HEALTH_OK', or the status with each check's code and message ('HEALTH_WARN: SLOW_OPS …')."""
    health = status["health"]
    checks = health.get("checks") or {}
    if health["status"] == "HEALTH_OK" or not checks:
        return str(health["status"])
    named = "; ".join(
        f"{code} {c.get('summary', {}).get('message', '')}".strip() for code, c in checks.items()
    )
    return f"{health['status']}: {named}"


def _redis_replicas_check(host: Any, name: str, master: str, pw: str, plan: Plan) -> Check:
    """Every other Redis host is a replica of the primary the Sentinels name, its link up."""
    res = host.run(f"REDISCLI_AUTH={pw} redis-cli -p {SENTINEL_PORT} sentinel replicas {master}")
    # redis-cli prints one field per line off a terminal: name, value, ...; each replica starts
    # with its "name" field.
    lines = res.stdout.splitlines()
    replicas: list[dict[str, str]] = []
    for key, value in zip(lines[::2], lines[1::2], strict=False):
        if key == "name":
            replicas.append({})
        if replicas:
            replicas[-1][key] = value
    ok = [
        r["ip"]
        for r in replicas
        if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
    ]
    want = len(plan.hosts("redis")) - 1
    return Check(
        "redis primary + replicas",
        name,
        res.rc == 0 and len(ok) == want,
        f"{len(ok)} of {want} replicas linked: {_names(ok)}"
        + (
            "; others: "
            + ", ".join(
                f"{r.get('ip')} ({r.get('flags')})" for r in replicas if r.get("ip") not in ok
            )
            if len(replicas) > len(ok)
            else ""
        ),
        f"{want} replicas linked to the primary",
    )


PATRONICTL = "patronictl -c /etc/patroni/config.yml list -f json"


def _patroni_checks(hosts: dict[str, Any], plan: Plan) -> list[Check]:
    """One leader, the rest replicas that the leader sees streaming (pg_stat_replication)."""
    members_hosts = plan.hosts("postgres")
    first = members_hosts[0].name
    res = hosts[first].run(PATRONICTL)
    try:
        members = json.loads(res.stdout)
    except ValueError:
        return [
            Check(
                "patroni leader + streaming replicas",
                first,
                False,
                f"patronictl failed: {(res.stderr or res.stdout).strip()[:200]}",
                f"one leader, {len(members_hosts) - 1} replicas",
            )
        ]
    leaders = [m["Member"] for m in members if m.get("Role") == "Leader"]
    replicas = [m["Member"] for m in members if m.get("Role") in ("Replica", "Sync Standby")]
    out = [
        Check(
            "patroni leader + replicas",
            first,
            len(leaders) == 1 and len(replicas) == len(members_hosts) - 1,
            f"leader {_names(leaders)}, replicas {_names(replicas)}",
            f"one leader, {len(members_hosts) - 1} replicas",
        )
    ]
    if len(leaders) == 1 and leaders[0] in hosts:
        sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        res = hosts[leaders[0]].run(f"runuser -u postgres -- psql -XAtc {shlex.quote(sql)}")
        n = int(res.stdout.strip()) if res.stdout.strip().isdigit() else -1
        out.append(
            Check(
                "patroni leader + streaming replicas",
                leaders[0],
                n == len(members_hosts) - 1,
                f"{n} replicas streaming from {leaders[0]}" if n >= 0 else res.stderr.strip()[:200],
                f"{len(members_hosts) - 1} replicas streaming",
            )
        )
        out.append(_sync_check(hosts[leaders[0]], leaders[0], len(members_hosts) - 1))
    return out


SYNC_SQL = (
    "SELECT current_setting('synchronous_standby_names'),"
    " (SELECT string_agg(application_name, ',') FROM pg_stat_replication WHERE sync_state = 'sync')"
)


def _sync_check(host: Any, leader: str, replicas: int) -> Check:
    """With Patroni's synchronous_mode on, the leader names a replica in synchronous_standby_names
    and pg_stat_replication shows it "sync": a commit is acknowledged only once a replica has it."""
    cfg = host.run("patronictl -c /etc/patroni/config.yml show-config")
    if cfg.rc != 0:
        return Check(
            "synchronous replication on",
            leader,
            False,
            cfg.stderr.strip()[:200],
            "patronictl show-config answers",
        )
    if "synchronous_mode: true" not in cfg.stdout.splitlines():
        return Check(
            "synchronous replication on",
            leader,
            True,
            "synchronous_mode off by the site",
            "synchronous_mode as the site says",
        )
    res = host.run(f"runuser -u postgres -- psql -XAt -F '|' -c {shlex.quote(SYNC_SQL)}")
    names, _, sync = res.stdout.strip().partition("|")
    return Check(
        "synchronous replication on",
        leader,
        res.rc == 0 and ((bool(names) and bool(sync)) or replicas == 0),
        f"synchronous_standby_names = {names!r}, sync replicas: {sync or 'none'}"
        if res.rc == 0
        else res.stderr.strip()[:200],
        "a sync standby named and streaming",
    )


def run_checks(
    plan: Plan, state_dir: Path, deployed: set[str], secrets: dict[str, str] | None = None
) -> list[Check]:
    """Run every check that applies to what has been deployed, hosts in parallel."""
    if secrets is None:
        from hzcloud.secrets import read_secrets

        secrets = read_secrets(state_dir.parent)
    hosts = {n.name: host_for(n, state_dir) for n in plan.nodes}
    with ThreadPoolExecutor(max_workers=min(16, len(plan.nodes))) as pool:
        per_node = list(
            pool.map(
                lambda n: _stopped_or(
                    n.name, lambda: _node_checks(hosts[n.name], n, plan, deployed)
                ),
                plan.nodes,
            )
        )
    checks = [c for group in per_node for c in group]
    unreachable = {c.host for c in checks if c.name == "reachable"}
    if not unreachable:
        checks += _stopped_or("", lambda: _cluster_checks(hosts, plan, secrets, deployed))
    return checks


def _stopped_or(host: str, run: Callable[[], list[Check]]) -> list[Check]:
    """The checks, or one failed check saying in words why they stopped (a host gone mid-way)."""
    try:
        return run()
    except Exception as exc:  # testinfra raises backend-specific errors for a host that went away
        return [Check("checks ran to the end", host, False, said(exc), "every check answers")]


def check_junit_target(path: Path) -> None:
    """Exit 2 before any check runs when the JUnit report could not be written to path."""
    from hzcloud.errors import UsageError

    folder = path.parent.resolve()
    if path.is_dir():
        what = f"--junit {path}: is a folder"
    elif not folder.is_dir():
        what = f"--junit {path}: the folder {folder} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        what = f"--junit {path}: cannot write there"
    else:
        return
    raise UsageError(what, "nothing was checked", "give a file path in a writable folder")


def write_junit(checks: list[Check], path: Path) -> None:
    suite = ET.Element(
        "testsuite",
        name="hzcloud.verify",
        tests=str(len(checks)),
        failures=str(sum(not c.passed for c in checks)),
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=c.host or "site", name=c.name)
        props = ET.SubElement(case, "properties")
        for key, value in (("host", c.host), ("expected", c.expected), ("seen", c.detail)):
            ET.SubElement(props, "property", name=key, value=value)
        if not c.passed:
            ET.SubElement(
                case, "failure", message=c.line()
            ).text = f"host: {c.host}\ncheck: {c.name}\nexpected: {c.expected}\nseen: {c.detail}\n"
        else:
            ET.SubElement(case, "system-out").text = c.detail
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
