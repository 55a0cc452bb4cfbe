"""Power cuts and partitions on the converged lab, seen by ordinary clients (psycopg, redis-py).

Each drill takes a node away the way a hospital loses one (`hzcloud lab kill`: the power;
`hzcloud lab cut`: the network), measures what a client writing all the while saw, brings the
node back (`lab up` / `lab heal`) and waits until it rejoined. Victims are found from the plan
and the clusters' own view, never by name. The client settings are the README's (hzrun).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import hzrun
import pytest
from typer.testing import CliRunner

from hzcloud.app import app

pytestmark = pytest.mark.lab

# What a power cut or a partition may cost a client, at most: issue 12's bound. Measured with
# ttl 5: 6.7-7.8 s in 21 leader drills (kill and cut), also while the Go build ran at nice 19 and
# two CPU hogs at nice 10 (the checks' priority) shared the two cores with the eight nodes.
MAX_OUTAGE = 10.0
PHASES = "preflight,base,data"


@pytest.fixture(scope="module")
def site(converged_site: dict[str, Any], lab_site: Path) -> Path:
    return lab_site


def _state(site: Path, node: str) -> str:
    nodes = hzrun.lab_verb(site, "status")["nodes"]
    return str(next(n["state"] for n in nodes if n["name"] == node))


def _quiet_node(site: Path) -> dict[str, Any]:
    """The server with the fewest roles (the verbs' own tests disturb it least)."""
    return min(hzrun.plan_nodes(site), key=lambda n: (len(n["roles"]), n["name"]))


def test_cut_partitions_a_running_node_and_heal_restores_it(site: Path) -> None:
    node = _quiet_node(site)["name"]
    cut = hzrun.lab_verb(site, "cut", node)
    try:
        assert cut["changed"]
        assert _state(site, node) == "cut"
        assert hzrun.node_run(site, node, "true").returncode == 255, "the node is still reachable"
        assert not hzrun.lab_verb(site, "cut", node)["changed"]
    finally:
        healed = hzrun.lab_verb(site, "heal")
    assert healed["changed"]
    assert _state(site, node) == "running"
    assert hzrun.node_run(site, node, "true").returncode == 0
    assert not hzrun.lab_verb(site, "heal", node)["changed"]


def test_kill_tells_nobody_and_up_boots_the_node_again(site: Path) -> None:
    node = _quiet_node(site)
    conn = socket.create_connection((node["address"], 22), timeout=5)
    try:
        banner = b""
        while not banner.endswith(b"\n"):  # the whole greeting, so only silence is left
            banner += conn.recv(256)
        assert banner.startswith(b"SSH-"), "sshd did not greet"
        killed = hzrun.lab_verb(site, "kill", node["name"])
        assert killed["changed"]
        assert _state(site, node["name"]) == "stopped"
        # A dead sshd's kernel would send FIN (recv -> b"") or RST (ConnectionResetError);
        # a server without power sends nothing at all.
        conn.settimeout(3)
        with pytest.raises(TimeoutError):
            conn.recv(64)
    finally:
        conn.close()
    assert not hzrun.lab_verb(site, "kill", node["name"])["changed"]
    up = hzrun.lab_verb(site, "up")
    assert {n["name"]: n["state"] for n in up["nodes"]}[node["name"]] == "running"
    assert hzrun.node_run(site, node["name"], "true").returncode == 0


def test_verbs_refuse_an_unknown_node(site: Path) -> None:
    for verb in ("kill", "cut", "heal"):
        result = CliRunner().invoke(app, ["lab", verb, "no-such-node", "--site", str(site)])
        assert result.exit_code == 2, (verb, result.output)
        assert "no node named 'no-such-node'" in result.output


def test_postgres_leader_power_cut(site: Path) -> None:
    drill = hzrun.drill_pg_leader_killed(site)
    print(f"\n{drill.line()}")
    try:
        assert drill.acked > 0
        assert drill.lost == 0, f"{drill.lost} acknowledged commits lost"
        assert drill.outage <= MAX_OUTAGE, drill.line()
        assert drill.notes["sync_standby"], "no synchronous standby after the failover"
    finally:  # the next drills need every node, whatever this one saw
        hzrun.node_back(site, drill.victim)
    members = hzrun.wait_for("the old leader rejoins", lambda: hzrun.pg_cluster_healthy(site), 180)
    assert drill.victim in {m["Member"] for m in members}


def test_postgres_leader_partition_has_no_split_brain(site: Path) -> None:
    drill = hzrun.drill_pg_leader_cut(site)
    print(f"\n{drill.line()}")
    assert drill.lost == 0, f"{drill.lost} acknowledged commits lost"
    assert drill.notes["new_leader"] not in (None, drill.victim)
    # No commit is acknowledged on the old leader's side once the new leader took writes.
    assert drill.notes["old_side_acked_after_takeover"] == 0, drill.line()
    assert drill.outage <= MAX_OUTAGE, drill.line()
    assert drill.notes["old_rejoined_as"] in ("Replica", "Sync Standby")


def test_etcd_member_power_cut_leaves_postgres_alone(site: Path) -> None:
    drill = hzrun.drill_etcd_member_killed(site)
    print(f"\n{drill.line()}")
    try:
        assert drill.failed == 0, drill.line()
        assert drill.lost == 0
        assert drill.notes["pg_leader_after"] == drill.notes["pg_leader_before"]
        assert drill.outage < 2, drill.line()
    finally:
        hzrun.node_back(site, drill.victim)
    hzrun.wait_for("the etcd member rejoins", lambda: hzrun.pg_cluster_healthy(site), 180)
    hzrun.wait_for("etcd has all its members healthy", lambda: hzrun.etcd_healthy(site), 60)


def test_redis_primary_power_cut(site: Path) -> None:
    drill = hzrun.drill_redis_primary_killed(site)
    print(f"\n{drill.line()}")
    try:
        assert drill.acked > 0
        assert drill.outage <= MAX_OUTAGE, drill.line()
        assert drill.notes["new_primary"] is not None
    finally:
        hzrun.node_back(site, drill.victim)
    replicas = len(hzrun.hosts_with(site, "redis")) - 1
    hzrun.wait_for(
        "the old primary rejoins as a replica",
        lambda: hzrun.redis_replicas_online(site) == replicas,
        120,
    )


def test_up_after_the_drills_changes_nothing(site: Path) -> None:
    hzrun.wait_for("PostgreSQL healthy", lambda: hzrun.pg_cluster_healthy(site), 180)
    _rc, data = hzrun.up_json(site, PHASES)
    assert sum(p["changed"] for p in data["phases"]) == 0, data["phases"]
