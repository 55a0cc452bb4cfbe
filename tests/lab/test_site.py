"""The whole site, as an operator converges it: every phase with the real concurrent schedule
(everything answering), then the same `up` again (0 changed in every phase, everything still
answering), then every server's power cut at once and the whole site converged once more:
0 changed, every phase ok. The site CA is the same from start to end: nothing ever replaces it
on its own.

Runs after the data and storage suites on the same lab (their converge is the start of this
one); needs the artifacts folder for the kubernetes and platform phases.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hzcloud import lab, pki
from hzcloud.lab.node import stop
from hzcloud.lab.provider import _load, _node_needle

pytestmark = pytest.mark.lab

HZ = [sys.executable, "-m", "hzcloud"]


def up_all(site: Path) -> tuple[int, dict[str, Any]]:
    """`hzcloud up SITE --output json`: every phase the site plans, no --only."""
    res = subprocess.run(
        [*HZ, "up", str(site), "--output", "json"], capture_output=True, text=True, timeout=3600
    )
    try:
        return res.returncode, json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"hzcloud up gave no JSON (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")


def summary(data: dict[str, Any]) -> str:
    return " ".join(
        f"{p['name']}={p['status']}/{p['changed']}ch/{p['seconds']}s" for p in data["phases"]
    )


@pytest.fixture(scope="module")
def whole_site(converged_site: dict[str, Any], site_artifacts: Path) -> dict[str, Any]:
    """The first `up` of every phase (kubernetes and platform come up here)."""
    site = Path(converged_site["site"])
    ca = pki.ca_cert_path(site)
    before = pki.fingerprint(ca) if ca.exists() else ""
    t0 = time.monotonic()
    rc, data = up_all(site)
    print(f"\nfirst whole-site up: {time.monotonic() - t0:.0f} s: {summary(data)}")
    assert rc == 0, json.dumps(data, indent=2)
    return {"site": site, "ca": before or pki.fingerprint(ca), "first": data}


def test_every_phase_of_the_plan_ran(whole_site: dict[str, Any]) -> None:
    site = whole_site["site"]
    planned = [p["name"] for p in json.loads(hzrun_hz("plan", str(site)))["phases"]]
    ran = [p["name"] for p in whole_site["first"]["phases"]]
    assert ran == planned
    assert {"storage", "data", "kubernetes", "platform", "verify"} <= set(ran)
    assert all(p["status"] in ("ok", "skipped") for p in whole_site["first"]["phases"])


def test_everything_answers_with_the_site_ca(whole_site: dict[str, Any]) -> None:
    site = whole_site["site"]
    check_postgres_tls(site)
    check_kubernetes_api(site)
    assert pki.fingerprint(pki.ca_cert_path(site)) == whole_site["ca"]


def test_second_up_changes_nothing_anywhere(whole_site: dict[str, Any]) -> None:
    """The plain re-run an operator does: no phase changes anything, everything answers."""
    site = whole_site["site"]
    t0 = time.monotonic()
    rc, data = up_all(site)
    print(f"\nsecond whole-site up: {time.monotonic() - t0:.0f} s: {summary(data)}")
    assert rc == 0, json.dumps(data, indent=2)
    assert [p["name"] for p in data["phases"]] == [p["name"] for p in whole_site["first"]["phases"]]
    assert {p["name"]: p["changes"] for p in data["phases"] if p["changed"]} == {}
    assert all(p["status"] == "ok" for p in data["phases"]), summary(data)
    check_postgres_tls(site)
    check_kubernetes_api(site)
    assert pki.fingerprint(pki.ca_cert_path(site)) == whole_site["ca"]


def test_restart_every_node_then_up_changes_nothing(whole_site: dict[str, Any]) -> None:
    site = whole_site["site"]
    names, state = _load(site)
    for server in names.spec.servers:  # the plug of every server pulled at once
        stop(state.node(server.name).get("pid"), _node_needle(names.workdir, server.name))
    assert {n.state for n in lab.status(site).nodes} == {"stopped"}
    lab.up(site)
    t0 = time.monotonic()
    rc, data = up_all(site)
    print(f"\nup after every node restarted: {time.monotonic() - t0:.0f} s: {summary(data)}")
    assert rc == 0, json.dumps(data, indent=2)
    assert {p["name"]: p["changes"] for p in data["phases"] if p["changed"]} == {}
    assert all(p["status"] == "ok" for p in data["phases"]), summary(data)
    check_postgres_tls(site)
    check_kubernetes_api(site)
    assert pki.fingerprint(pki.ca_cert_path(site)) == whole_site["ca"]


def hzrun_hz(*args: str) -> str:
    return subprocess.run([*HZ, *args, "--output", "json"], capture_output=True, text=True).stdout


def check_postgres_tls(site: Path) -> None:
    """A client that trusts only the site CA writes through the PostgreSQL endpoint."""
    import psycopg

    status = json.loads(hzrun_hz("status", str(site)))
    endpoint = next(e for e in status["endpoints"] if e["name"] == "postgres")
    assert endpoint["ca"] == str(pki.ca_cert_path(site))
    secrets = yaml.safe_load((site / "secrets.yaml").read_text())
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(
                endpoint["url"],
                user="postgres",
                password=secrets["postgres_superuser_password"],
                sslrootcert=endpoint["ca"],
                connect_timeout=3,
            ) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS hz_site_check (at timestamptz)")
                conn.execute("INSERT INTO hz_site_check VALUES (now())")
                assert conn.info.pgconn.ssl_in_use
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def check_kubernetes_api(site: Path) -> None:
    """The API answers through its endpoint, its certificate signed by the site CA."""
    import ssl
    import urllib.request

    status = json.loads(hzrun_hz("status", str(site)))
    endpoint = next(e for e in status["endpoints"] if e["name"] == "kubernetes-api")
    context = ssl.create_default_context(cafile=endpoint["ca"])
    deadline = time.monotonic() + 60
    while True:
        try:
            # /readyz is open to anonymous clients (system:public-info-viewer)
            with urllib.request.urlopen(
                f"{endpoint['url']}/readyz", context=context, timeout=5
            ) as r:
                assert r.read() == b"ok"
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
