"""`hzcloud up` for real on the lab: base + data, idempotence, failovers, a lost server, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hzrun
import pytest
import yaml

pytestmark = pytest.mark.lab

HZ = [sys.executable, "-m", "hzcloud"]
PHASES = "preflight,base,data"


def hz(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HZ, *args], capture_output=True, text=True, timeout=timeout)


def up_json(site: Path, only: str = PHASES) -> tuple[int, dict[str, Any]]:
    return hzrun.up_json(site, only, expect_ok=False)


def plan_of(site: Path) -> dict[str, Any]:
    return json.loads(hz("plan", str(site), "--output", "json").stdout)


def hosts_with(site: Path, role: str) -> list[dict[str, Any]]:
    return [n for n in plan_of(site)["nodes"] if role in n["roles"]]


def secrets(site: Path) -> dict[str, str]:
    return yaml.safe_load((site / "secrets.yaml").read_text())


@pytest.fixture(scope="module")
def converged(converged_site: dict[str, Any]) -> dict[str, Any]:
    return converged_site


def test_first_up_converges(converged: dict[str, Any]) -> None:
    phases = {p["name"]: p for p in converged["phases"]}
    assert {"preflight", "base", "data"} <= set(phases)
    assert all(p["status"] in ("ok", "skipped") for p in phases.values()), phases
    print(
        f"\nfirst up: {converged['wall_seconds']:.1f}s "
        + " ".join(f"{n}={p['seconds']}s/{p['changed']}ch" for n, p in phases.items())
    )


def test_second_up_changes_nothing(converged: dict[str, Any], lab_site: Path) -> None:
    t0 = time.monotonic()
    rc, data = up_json(lab_site)
    assert rc == 0, data
    assert [p["changed"] for p in data["phases"]] == [0] * len(data["phases"]), data["phases"]
    print(f"\nconverged re-run: {time.monotonic() - t0:.1f}s")


def test_secrets_are_private(converged: dict[str, Any], lab_site: Path) -> None:
    assert (lab_site / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    pw = secrets(lab_site)["postgres_superuser_password"]
    for path in (lab_site / "state").rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 5_000_000:
            assert pw not in path.read_text(errors="ignore"), f"a secret leaked into {path}"


def test_status_answers_from_the_journal(converged: dict[str, Any], lab_site: Path) -> None:
    res = hz("status", str(lab_site), "--output", "json")
    assert res.returncode == 0
    names = {p["name"]: p["status"] for p in json.loads(res.stdout)["phases"]}
    assert names["data"] == "ok" and names["base"] == "ok"


def test_verify_passes_with_junit(
    converged: dict[str, Any], lab_site: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "verify.xml"
    res = hz("verify", str(lab_site), "--output", "json", "--junit", str(junit))
    data = json.loads(res.stdout)
    failed = [c for c in data["checks"] if not c["passed"]]
    assert res.returncode == 0 and data["passed"], failed
    names = {c["name"] for c in data["checks"]}
    assert {"patroni leader + streaming replicas", "sentinel quorum", "clock in sync"} <= names
    assert "<testsuite" in junit.read_text()


def _pg_connect(site: Path, **kw: Any) -> Any:
    import psycopg

    vip = yaml.safe_load((site / "site.yaml").read_text())["networks"]["postgres_vip"]
    return psycopg.connect(
        host=vip,
        user="postgres",
        dbname="postgres",
        sslmode="require",
        password=secrets(site)["postgres_superuser_password"],
        connect_timeout=3,
        **kw,
    )


def _leader(site: Path) -> str:
    """The Patroni leader, from the DCS (patronictl answers on any member, even a stopped one)."""
    for node in hosts_with(site, "postgres"):
        res = hzrun.node_run(
            site, node["name"], "patronictl -c /etc/patroni/config.yml list -f json"
        )
        try:
            members = json.loads(res.stdout)
        except ValueError:
            continue
        leaders = [m["Member"] for m in members if m.get("Role") == "Leader"]
        if leaders:
            return leaders[0]
    pytest.fail("no Patroni leader")


def _pg_connect_retrying(site: Path, seconds: float = 20, **kw: Any) -> Any:
    """The first connection of a drill: a busy host or a stale ARP entry may take a few seconds."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _pg_connect(site, **kw)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_postgres_failover_keeps_every_acknowledged_commit(
    converged: dict[str, Any], lab_site: Path
) -> None:
    with _pg_connect_retrying(lab_site, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS hz_failover_probe (id bigint PRIMARY KEY, at timestamptz DEFAULT now())"
        )
        conn.execute("TRUNCATE hz_failover_probe")
    acked: list[tuple[float, int]] = []  # (when, id) of every commit the server acknowledged
    errors: list[float] = []  # when a write failed (not acknowledged)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = _pg_connect(lab_site, autocommit=True)
                conn.execute("INSERT INTO hz_failover_probe (id) VALUES (%s)", (i,))
                acked.append((time.monotonic(), i))
            except Exception:  # any error: the write was not acknowledged; reconnect
                errors.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
            i += 1
        if conn is not None:
            conn.close()

    old = _leader(lab_site)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(3)
    assert acked, "no write went through the VIP before the drill"
    stopped_at = time.monotonic()
    try:
        res = hzrun.node_run(lab_site, old, "systemctl stop patroni")
        assert res.returncode == 0, res.stderr
        resumed = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and resumed is None:
            time.sleep(0.5)
            # the outage starts with the first failed write; writes resume with the next ack
            outage = next((e for e in errors if e >= stopped_at), None)
            if outage is not None:
                resumed = next((a for a, _ in acked if a > outage), None)
        time.sleep(3)
        stop.set()
        t.join(10)
        assert outage is not None, f"the writer never saw {old} go away"
        assert resumed is not None, f"writes never resumed after stopping {old}"
        new = _leader(lab_site)
        assert new != old
        with _pg_connect_retrying(lab_site) as conn:
            rows = {r[0] for r in conn.execute("SELECT id FROM hz_failover_probe")}
        lost = [i for _, i in acked if i not in rows]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged commits lost: {lost[:10]}"
        print(
            f"\npostgres failover {old} -> {new}: writes resumed after "
            f"{resumed - stopped_at:.1f}s, {len(acked)} commits acknowledged, none lost"
        )
    finally:
        stop.set()
        hzrun.node_run(lab_site, old, "systemctl start patroni")


def test_redis_failover_promotes_a_replica(converged: dict[str, Any], lab_site: Path) -> None:
    from redis.sentinel import Sentinel

    site = yaml.safe_load((lab_site / "site.yaml").read_text())
    pw = secrets(lab_site)["redis_password"]
    sentinels = [(n["address"], 26379) for n in hosts_with(lab_site, "redis-sentinel")]
    name = f"{site['hospital']['code']}-redis"
    sentinel = Sentinel(sentinels, socket_timeout=1, sentinel_kwargs={"password": pw})
    old_addr = sentinel.discover_master(name)
    master = sentinel.master_for(name, password=pw, socket_timeout=1)
    master.set("hz:drill", "before")
    old_node = next(n["name"] for n in hosts_with(lab_site, "redis") if n["address"] == old_addr[0])
    t0 = time.monotonic()
    res = hzrun.node_run(lab_site, old_node, "systemctl stop redis-server")
    assert res.returncode == 0, res.stderr
    try:
        promoted = None
        while time.monotonic() - t0 < 60:
            try:
                if sentinel.discover_master(name) != old_addr:
                    master.set("hz:drill", "after")
                    promoted = time.monotonic() - t0
                    break
            except Exception:  # master not known yet / connection refused during failover
                pass
            time.sleep(0.5)
        assert promoted is not None, "Sentinel did not promote a replica within 60 s"
        assert master.get("hz:drill") == b"after"
        print(f"\nredis failover: new primary accepting writes after {promoted:.1f}s")
    finally:
        hzrun.node_run(lab_site, old_node, "systemctl start redis-server")


def test_services_rejoin_and_up_is_still_converged(
    lab_site: Path, converged: dict[str, Any]
) -> None:
    """After the drills the old leaders rejoin as replicas; a re-run must not undo the failover."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        res = hz("verify", str(lab_site), "--output", "json")
        if res.returncode == 0:
            break
        time.sleep(5)
    assert res.returncode == 0, res.stdout
    rc, data = up_json(lab_site)
    assert rc == 0
    assert sum(p["changed"] for p in data["phases"]) == 0, data["phases"]


def test_bad_input_touches_nothing(lab_site: Path, tmp_path: Path) -> None:
    site = tmp_path / "bad"
    site.mkdir()
    text = (lab_site / "site.yaml").read_text().replace("replicas: 3", "replicas: 9")
    (site / "site.yaml").write_text(text)
    for key in ("keys",):
        shutil.copytree(lab_site / key, site / key)
    res = hz("up", str(site))
    assert res.returncode == 2
    assert "services.ceph.replicas" in res.stderr and "Traceback" not in res.stderr
    assert not (site / "state").exists(), "bad input must not even render"


def test_lost_server_stops_the_run_and_up_resumes(
    lab_site: Path, converged: dict[str, Any]
) -> None:
    victim = hosts_with(lab_site, "redis")[-1]["name"]
    proc = subprocess.Popen(
        [*HZ, "up", str(lab_site), "--only", "base,data", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = lab_site / "state" / "journal.jsonl"
    # cut the server off as soon as the base phase is running
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = journal.read_text().splitlines() if journal.exists() else []
        if (
            lines
            and json.loads(lines[-1])["phase"] == "base"
            and json.loads(lines[-1])["status"] == "running"
        ):
            break
        time.sleep(0.2)
    link = _cut(lab_site, victim)
    try:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 1, out + err
        assert victim in err and "base" in err, err
        last = [json.loads(x) for x in journal.read_text().splitlines()]
        base = [r for r in last if r["phase"] == "base"][-1]
        assert base["status"] == "failed" and base["error"]["host"] == victim
    finally:
        _restore(link)
    rc, data = up_json(lab_site, "base,data")
    assert rc == 0, data


def _cut(site: Path, node: str) -> str:
    """Take the host side of the node's link down (the server 'loses its cable')."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    suffix = node[-8:]
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("vb-") and suffix in name:
            subprocess.run(["ip", "link", "set", name, "down"], check=True)
            return name
    pytest.fail(f"no host-side link for {node} in:\n{links}")


def _restore(link: str) -> None:
    subprocess.run(["ip", "link", "set", link, "up"], check=True)
    time.sleep(2)
