"""Running the real `hzcloud` command from lab tests: `up --output json` and `lab ssh`."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hzcloud import lab
from hzcloud.phases.data import POSTGRES_PORT, SENTINEL_PORT
from hzcloud.pki import ca_cert_path

HZ = [sys.executable, "-m", "hzcloud"]


def up_json(site: Path, only: str, expect_ok: bool = True) -> tuple[int, dict[str, Any]]:
    """`hzcloud up SITE --only ONLY --output json`: exit code and the parsed summary."""
    res = subprocess.run(
        [*HZ, "up", str(site), "--only", only, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    try:
        data: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"hzcloud up gave no JSON (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
    if expect_ok:
        assert res.returncode == 0, json.dumps(data, indent=2) + res.stderr
    return res.returncode, data


def converged_again(site: Path, only: str, first: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A run of ONLY after the site converged, and which one it was.

    `first` is a suite's own `up` of ONLY: when it changed nothing, an earlier suite had
    converged the site (in CI, test_site.py) and `first` already is that run; otherwise
    (the suite ran alone) it is a new `up`. Either way the answer is a run that followed a
    converged one, so a task that changes on every run shows there."""
    if all(p["changed"] == 0 for p in first["phases"]):
        return first, "the suite's own run (the site was converged before it)"
    return up_json(site, only)[1], "a second run"


def kubectl(site: Path, *args: str) -> str:
    """kubectl of the site's artifacts with the site's admin kubeconfig (from this host)."""
    from hzcloud.model import load_site

    artifacts = site / load_site(site).artifacts
    return subprocess.run(
        [str(artifacts / "bin" / "kubectl"), f"--kubeconfig={site / 'kubeconfig'}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def node_run(
    site: Path, node: str, command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a shell command line on a lab node (`hzcloud lab ssh NODE -- sh -c COMMAND`).

    `lab ssh` quotes each word it is given, so the command line goes to `sh -c` as one word;
    it starts in /tmp (postgres-owned commands cannot read root's home).
    """
    return subprocess.run(
        [*HZ, "lab", "ssh", "--site", str(site), node, "--", "sh", "-c", f"cd /tmp && {command}"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- Failure drills: the lab's power cuts and partitions, measured with ordinary clients ---
#
# Shared by tests/lab/test_drills.py (which asserts) and benchmarks/drills.py (which prints).
# Nothing here names a node: victims come from the plan and from the cluster's own view.

# The client settings the README recommends, and nothing else (see "Client settings").
# libpq: give up on a silent server in seconds, not minutes: a dead leader sends no RST.
PG_CLIENT: dict[str, Any] = {
    "connect_timeout": 2,  # a SYN to an address nobody holds yet
    "target_session_attrs": "read-write",  # never settle for a demoted (read-only) server
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 2,  # an idle connection to a dead server fails within ~4 s
    "tcp_user_timeout": 4000,  # ms: a query sent to a dead server fails within 4 s
    "sslmode": "verify-full",  # with sslrootcert = the site CA (the VIP is in every certificate)
}
# redis-py: every socket operation bounded, and NO retries inside redis-py: its retry reconnects
# the same connection object to the address it had (the dead primary) without asking Sentinel
# again (redis-py 8.1: send_packed_command -> connect_check_health), 4 x 4 tries by default.
# The application retries the operation instead: the next command takes a connection from the
# pool, which asks Sentinel for the primary first.
REDIS_SOCKET: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}
# `lab up` waits for the host's lab lock, which another lab's `up` may hold for minutes.
LAB_VERBS_TIMEOUT = 900


def plan_nodes(site: Path) -> list[dict[str, Any]]:
    """The plan's servers: name, address, roles (`hzcloud plan --output json`)."""
    res = subprocess.run(
        [*HZ, "plan", str(site), "--output", "json"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout)["nodes"])


def hosts_with(site: Path, role: str) -> list[dict[str, Any]]:
    return [n for n in plan_nodes(site) if role in n["roles"]]


def site_secrets(site: Path) -> dict[str, str]:
    return dict(yaml.safe_load((site / "secrets.yaml").read_text()))


def site_file(site: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((site / "site.yaml").read_text()))


def lab_verb(site: Path, verb: str, *args: str) -> dict[str, Any]:
    """`hzcloud lab VERB [ARGS] --site SITE --output json`, which must succeed; its JSON."""
    res = subprocess.run(
        [*HZ, "lab", verb, *args, "--site", str(site), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=LAB_VERBS_TIMEOUT,
    )
    assert res.returncode == 0, f"hzcloud lab {verb} {' '.join(args)}: {res.stdout}{res.stderr}"
    return dict(json.loads(res.stdout))


def first_answer(site: Path, nodes: list[str], command: str) -> str | None:
    """stdout of the first node (in order) where command succeeds; None when none does."""
    for node in nodes:
        res = node_run(site, node, command, timeout=30)
        if res.returncode == 0 and res.stdout.strip():
            return res.stdout
    return None


def patroni_members(site: Path) -> list[dict[str, Any]]:
    """`patronictl list -f json` from the first postgres node that answers ([] when none)."""
    out = first_answer(
        site,
        [n["name"] for n in hosts_with(site, "postgres")],
        "patronictl -c /etc/patroni/config.yml list -f json",
    )
    try:
        return list(json.loads(out or "[]"))
    except ValueError:
        return []


def patroni_role(members: list[dict[str, Any]], role: str) -> str | None:
    return next((m["Member"] for m in members if m.get("Role") == role), None)


def wait_for(what: str, check: Any, timeout: float, every: float = 1.0) -> Any:
    """Call check() until it returns something true; that value (fails after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def pg_cluster_healthy(site: Path) -> list[dict[str, Any]] | None:
    """Members when every postgres node runs, one leads and one is the sync standby, else None."""
    members = patroni_members(site)
    expected = {n["name"] for n in hosts_with(site, "postgres")}
    if {m["Member"] for m in members} != expected:
        return None
    if patroni_role(members, "Leader") is None:
        return None
    if len(expected) > 1 and patroni_role(members, "Sync Standby") is None:
        return None
    if any(m.get("State") not in ("running", "streaming") for m in members):
        return None
    return members


def pg_connect(site: Path, **kw: Any) -> Any:
    """A psycopg connection through the client endpoint (the VIP) with the README's settings."""
    import psycopg

    return psycopg.connect(
        host=str(site_file(site)["networks"]["postgres_vip"]),
        port=POSTGRES_PORT,
        sslrootcert=str(ca_cert_path(site)),
        user="postgres",
        dbname="postgres",
        password=site_secrets(site)["postgres_superuser_password"],
        **{**PG_CLIENT, **kw},
    )


def pg_connect_retrying(site: Path, seconds: float = 60, **kw: Any) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return pg_connect(site, **kw)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def redis_sentinel(site: Path) -> tuple[Any, str, str]:
    """(a redis-py Sentinel with the README's settings, the primary's service name, password)."""
    from redis.sentinel import Sentinel

    password = site_secrets(site)["redis_password"]
    sentinels = [(n["address"], SENTINEL_PORT) for n in hosts_with(site, "redis-sentinel")]
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={"password": password, "retry": _no_retry(), **REDIS_SOCKET},
        **REDIS_SOCKET,
    )
    return sentinel, f"{site_file(site)['hospital']['code']}-redis", password


def _no_retry() -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def redis_primary_client(site: Path) -> Any:
    """The application's view: `master_for` with bounded sockets, retrying by itself (README)."""
    sentinel, name, password = redis_sentinel(site)
    return sentinel.master_for(name, password=password, retry=_no_retry(), **REDIS_SOCKET)


@dataclass
class Writes:
    """What one writer saw: when each write was acknowledged, and each failure."""

    acked: list[tuple[float, int]] = field(default_factory=list)  # (time.time(), id)
    failed: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), error)

    def _gaps(self, since: float) -> list[tuple[float, float]]:
        """(ack, next ack) pairs from the last ack before `since` on."""
        times = [t for t, _ in self.acked]
        start = max((t for t in times if t < since), default=since)
        return list(itertools.pairwise([start, *(t for t in times if t >= since)]))

    def outage(self, since: float) -> float:
        """The longest time without an acknowledged write, from the last ack before `since`."""
        return max((b - a for a, b in self._gaps(since)), default=0.0)

    def worst_gap(self, since: float) -> str:
        """Where the longest time without an ack lies, in seconds from `since` ("+4.9..+10.8")."""
        a, b = max(self._gaps(since), key=lambda g: g[1] - g[0], default=(since, since))
        return f"{a - since:+.1f}..{b - since:+.1f}"

    def resumed_after(self, since: float, gap: float = 0.5) -> float | None:
        """Time of the first ack that ends a gap longer than `gap` after `since` (None: not yet)."""
        return next((b for a, b in self._gaps(since) if b - a > gap), None)


class Writer(threading.Thread):
    """A stream of single writes, one at a time; each one recorded once acknowledged."""

    def __init__(self, write: Any, reconnect: Any = None, pause: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.write, self.reconnect, self.pause = write, reconnect, pause
        self.writes = Writes()
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                self.write(i)
                self.writes.acked.append((time.time(), i))
            except Exception as exc:  # not acknowledged, whatever the reason; try again
                self.writes.failed.append((time.time(), f"{type(exc).__name__}: {exc}"[:160]))
                if self.reconnect is not None:
                    self.reconnect()
                time.sleep(0.1)
            time.sleep(self.pause)

    def finish(self) -> Writes:
        self.stop.set()
        self.join(30)
        return self.writes


class PgWriter:
    """Single-row autocommit INSERTs through the VIP, reconnecting after any failure."""

    def __init__(self, site: Path, table: str) -> None:
        self.site, self.table, self.conn = site, table, None

    def write(self, i: int) -> None:
        if self.conn is None:
            self.conn = pg_connect(self.site, autocommit=True)
        self.conn.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (i,))

    def reconnect(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


def pg_fresh_table(site: Path, table: str) -> None:
    with pg_connect_retrying(site, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")


def pg_rows(site: Path, table: str) -> set[int]:
    with pg_connect_retrying(site) as conn:
        return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}


@dataclass
class Drill:
    """The figures of one drill (printed by the benchmark, asserted by the tests)."""

    name: str
    victim: str
    outage: float  # seconds without an acknowledged write (client's view)
    acked: int
    lost: int
    failed: int  # writes that failed (not acknowledged): the client saw the outage
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"{self.name:<22} victim={self.victim:<8} outage={self.outage:5.1f}s "
            f"acked={self.acked:<6} lost={self.lost:<3} failed={self.failed:<4} {extra}"
        )


def _wait_resumed(writes: Writes, since: float, timeout: float = 90) -> float | None:
    """Wait until writes resumed after an outage and ran 2 s more; when they resumed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resumed = writes.resumed_after(since)
        if resumed is not None and writes.acked[-1][0] - resumed > 2:
            return resumed
        time.sleep(0.5)
    return None


def node_back(site: Path, node: str) -> None:
    """`lab up` (boots the killed node) and wait until it answers over SSH."""
    lab_verb(site, "up")
    wait_for(f"{node} answers", lambda: node_run(site, node, "true").returncode == 0, 60)


def drill_pg_leader_killed(site: Path, table: str = "hz_drill_kill") -> Drill:
    """The Patroni leader's node loses power under a stream of single-row commits via the VIP."""
    wait_for("a healthy PostgreSQL cluster", lambda: pg_cluster_healthy(site), 180)
    old = patroni_role(patroni_members(site), "Leader")
    assert old
    pg_fresh_table(site, table)
    pg = PgWriter(site, table)
    writer = Writer(pg.write, pg.reconnect)
    writer.start()
    time.sleep(3)
    t_kill = time.time()
    try:
        lab_verb(site, "kill", old)
        resumed = _wait_resumed(writer.writes, t_kill)
    finally:
        writes = writer.finish()
        pg.reconnect()
    assert resumed is not None, f"writes never resumed after {old}'s power cut"
    members = wait_for(
        "a new leader with a sync standby",
        lambda: (
            (m := patroni_members(site))
            and patroni_role(m, "Leader") not in (None, old)
            and patroni_role(m, "Sync Standby")
            and m
        ),
        60,
    )
    t_sync = time.time() - t_kill
    rows = pg_rows(site, table)
    lost = [i for _, i in writes.acked if i not in rows]
    return Drill(
        "pg leader killed",
        old,
        writes.outage(t_kill),
        len(writes.acked),
        len(lost),
        len(writes.failed),
        {
            "new_leader": patroni_role(members, "Leader"),
            "sync_standby": patroni_role(members, "Sync Standby"),
            "sync_after_s": round(t_sync, 1),
            "first_error": writes.failed[0][1][:60] if writes.failed else "",
        },
    )


# Runs on the old leader's side of a partition: a client there keeps writing through the VIP
# (which the old leader holds until it demotes) and logs each acknowledged commit with the time.
_CUT_SIDE_WRITER = r"""
import sys, time, psycopg2
opts = dict(host=sys.argv[1], user="postgres", dbname="postgres", password=open(sys.argv[2]).read(),
            connect_timeout=2, target_session_attrs="read-write", keepalives=1, keepalives_idle=2,
            keepalives_interval=1, keepalives_count=2, tcp_user_timeout=4000,
            sslmode="verify-full", sslrootcert="/etc/patroni/tls/ca.crt")
log, i, conn = open(sys.argv[3], "a", buffering=1), int(sys.argv[4]), None
end = time.time() + float(sys.argv[5])
while time.time() < end:
    i += 1
    try:
        if conn is None:
            conn = psycopg2.connect(**opts)
            conn.autocommit = True
        conn.cursor().execute("INSERT INTO %s (id) VALUES (%%s)" % sys.argv[6], (i,))
        log.write("%f %d\n" % (time.time(), i))
    except Exception:
        conn = None
        time.sleep(0.2)
    time.sleep(0.01)
"""


def _start_cut_side_writer(site: Path, node: str, table: str, seconds: float) -> None:
    vip = str(site_file(site)["networks"]["postgres_vip"])
    password = site_secrets(site)["postgres_superuser_password"]
    setup = subprocess.run(
        [
            *lab.ssh_argv(site, node),
            "umask 077; cat > /tmp/hz-drill-writer.py; rm -f /tmp/hz-drill-acks; "
            "head -c0 /dev/null > /tmp/hz-drill-acks",
        ],
        input=_CUT_SIDE_WRITER,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert setup.returncode == 0, setup.stderr
    put = subprocess.run(
        [*lab.ssh_argv(site, node), "umask 077; cat > /tmp/hz-drill-pw"],
        input=password,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert put.returncode == 0, put.stderr
    # ids from 10^9 on: the other writer counts from 1 into the same table
    start = subprocess.run(
        [
            *lab.ssh_argv(site, node),
            f"setsid nohup python3 /tmp/hz-drill-writer.py {vip} /tmp/hz-drill-pw "
            f"/tmp/hz-drill-acks 1000000000 {seconds} {table} >/dev/null 2>&1 < /dev/null &",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert start.returncode == 0, start.stderr


def _cut_side_acks(site: Path, node: str) -> list[tuple[float, int]]:
    res = node_run(site, node, "cat /tmp/hz-drill-acks; rm -f /tmp/hz-drill-pw")
    assert res.returncode == 0, res.stderr
    return [(float(t), int(i)) for t, i in (line.split() for line in res.stdout.splitlines())]


def drill_pg_leader_cut(site: Path, table: str = "hz_drill_cut") -> Drill:
    """The Patroni leader's node is cut off (partition); clients on both sides keep writing."""
    wait_for("a healthy PostgreSQL cluster", lambda: pg_cluster_healthy(site), 180)
    old = patroni_role(patroni_members(site), "Leader")
    assert old
    pg_fresh_table(site, table)
    # The client on the old leader's side stops before the partition heals: every commit it
    # saw acknowledged was acknowledged by a server on its side of the cut.
    window = 40.0
    t_start = time.time()
    _start_cut_side_writer(site, old, table, window)
    pg = PgWriter(site, table)
    writer = Writer(pg.write, pg.reconnect)
    writer.start()
    time.sleep(3)
    t_cut = time.time()
    try:
        lab_verb(site, "cut", old)
        t_cut_done = time.time()
        resumed = _wait_resumed(writer.writes, t_cut)
    finally:
        writes = writer.finish()
        pg.reconnect()
    assert resumed is not None, f"writes never resumed after {old} was cut off"
    new = patroni_role(patroni_members(site), "Leader")
    time.sleep(max(0.0, t_start + window + 2 - time.time()))
    lab_verb(site, "heal", old)
    wait_for(f"{old} answers again", lambda: node_run(site, old, "true").returncode == 0, 60)
    old_side = _cut_side_acks(site, old)
    members = wait_for("the cluster healthy again", lambda: pg_cluster_healthy(site), 180)
    rows = pg_rows(site, table)
    lost = [i for _, i in writes.acked + old_side if i not in rows]
    return Drill(
        "pg leader cut off",
        old,
        writes.outage(t_cut),
        len(writes.acked) + len(old_side),
        len(lost),
        len(writes.failed),
        {
            "new_leader": new,
            "old_side_acked": len(old_side),
            # counted from when `lab cut` returned: the cut itself falls inside that call
            "old_side_acked_after_cut": sum(1 for t, _ in old_side if t > t_cut_done),
            "old_side_acked_after_takeover": sum(1 for t, _ in old_side if t >= resumed),
            "old_rejoined_as": next(m["Role"] for m in members if m["Member"] == old),
        },
    )


def _etcd_leader(site: Path) -> str | None:
    """The etcd leader's node name (etcdctl on the first member that answers)."""
    members = hosts_with(site, "etcd")
    endpoints = ",".join(f"http://{n['address']}:2379" for n in members)
    out = first_answer(
        site,
        [n["name"] for n in members],
        f"ETCDCTL_API=3 etcdctl --endpoints={endpoints} endpoint status -w json",
    )
    for status in json.loads(out or "[]"):
        if status["Status"]["header"]["member_id"] == status["Status"]["leader"]:
            address = status["Endpoint"].split("//")[1].split(":")[0]
            return next(n["name"] for n in members if n["address"] == address)
    return None


def drill_etcd_member_killed(site: Path, table: str = "hz_drill_etcd") -> Drill:
    """An etcd member's node (not etcd's leader, not PostgreSQL's) loses power under writes."""
    wait_for("a healthy PostgreSQL cluster", lambda: pg_cluster_healthy(site), 180)
    members = patroni_members(site)
    leader, sync = patroni_role(members, "Leader"), patroni_role(members, "Sync Standby")
    etcd_leader = _etcd_leader(site)
    candidates = [
        n["name"] for n in hosts_with(site, "etcd") if n["name"] not in (leader, etcd_leader)
    ]
    # A member that is no sync standby, when there is one: killing the sync standby stops commits
    # until Patroni names another (a drill of its own), which is not what this one is about.
    candidates.sort(key=lambda n: n == sync)
    assert candidates, "no etcd member outside the leaders to kill"
    victim = candidates[0]
    pg_fresh_table(site, table)
    pg = PgWriter(site, table)
    writer = Writer(pg.write, pg.reconnect)
    writer.start()
    time.sleep(3)
    t_kill = time.time()
    try:
        lab_verb(site, "kill", victim)
        time.sleep(20)  # longer than Patroni's ttl: a leader that lost its lock would show
    finally:
        writes = writer.finish()
        pg.reconnect()
    after = patroni_role(patroni_members(site), "Leader")
    rows = pg_rows(site, table)
    lost = [i for _, i in writes.acked if i not in rows]
    return Drill(
        "etcd member killed",
        victim,
        writes.outage(t_kill),
        len(writes.acked),
        len(lost),
        len(writes.failed),
        {
            "pg_leader_before": leader,
            "pg_leader_after": after,
            "victim_was_sync": victim == sync,
            "etcd_leader": etcd_leader,
            "worst_gap": writes.worst_gap(t_kill),
        },
    )


def drill_redis_primary_killed(site: Path, key: str = "hz:drill:kill") -> Drill:
    """The Redis primary's node loses power while a redis-py Sentinel client writes."""
    sentinel, name, _ = redis_sentinel(site)
    address = wait_for("a Redis primary", lambda: _discover(sentinel, name), 60)
    victim = next(n["name"] for n in hosts_with(site, "redis") if n["address"] == address[0])
    client = redis_primary_client(site)
    client.delete(key)
    writer = Writer(lambda i: client.rpush(key, i))
    writer.start()
    time.sleep(3)
    t_kill = time.time()
    try:
        lab_verb(site, "kill", victim)
        resumed = _wait_resumed(writer.writes, t_kill)
    finally:
        writes = writer.finish()
    assert resumed is not None, f"Redis writes never resumed after {victim}'s power cut"
    new = _discover(sentinel, name)
    stored = {int(v) for v in client.lrange(key, 0, -1)}
    lost = [i for _, i in writes.acked if i not in stored]
    return Drill(
        "redis primary killed",
        victim,
        writes.outage(t_kill),
        len(writes.acked),
        len(lost),
        len(writes.failed),
        {
            "new_primary": new[0] if new else None,
            "first_error": writes.failed[0][1][:60] if writes.failed else "",
        },
    )


def _discover(sentinel: Any, name: str) -> tuple[str, int] | None:
    try:
        return tuple(sentinel.discover_master(name))  # type: ignore[return-value]
    except Exception:
        return None


def redis_replicas_online(site: Path) -> int | None:
    """How many replicas the current primary streams to (None: no primary reachable)."""
    try:
        info = redis_primary_client(site).info("replication")
    except Exception:
        return None
    return sum(
        1
        for k, v in info.items()
        if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
    )


def etcd_healthy(site: Path) -> bool:
    """Every etcd member answers `endpoint health`."""
    members = hosts_with(site, "etcd")
    endpoints = ",".join(f"http://{n['address']}:2379" for n in members)
    out = first_answer(
        site,
        [n["name"] for n in members],
        f"ETCDCTL_API=3 etcdctl --endpoints={endpoints} endpoint health -w json",
    )
    try:
        return all(e["health"] for e in json.loads(out or "[]")) and bool(out)
    except (ValueError, KeyError):
        return False


# bundle entry -> its image in scripts/build-bundle-images
BUNDLE_IMAGES = {"imaging": "orthanc", "fhir": "fhir"}


def bundle_images(site_dir: Path) -> list[str]:
    """The scripts/build-bundle-images names of the bundle entries the site picks."""
    from hzcloud.bundle import bundle_for_site, picked
    from hzcloud.model import load_site

    site = load_site(site_dir)
    return sorted(
        {BUNDLE_IMAGES[le.entry.name] for le in picked(site, bundle_for_site(site, site_dir))}
    )


# --- The clinical bundle as hospital clients reach it (tests/lab/test_bundle.py, benchmarks/bundle.py) ---


def ct_study() -> Any:
    """A small generated CT image (64x64, 16 bits) in a new study."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Lab^Test", "MRN-LAB-0001", "CT"
    ds.StudyDate, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20261201", "1", 1, 1
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(256)) * 32  # 64*64*2 bytes
    return ds


class WayIn(http.client.HTTPSConnection):
    """HTTPS to https://NAME/ at the way in's address: SNI and verification use NAME."""

    def __init__(self, address: str, name: str, context: ssl.SSLContext) -> None:
        super().__init__(name, 443, context=context, timeout=15)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
