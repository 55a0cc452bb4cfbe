"""The bundle phase for real on the lab: imaging (Orthanc) and the FHIR server installed by
`hzcloud up`, then proved with clients nobody here wrote (pydicom, pynetdicom, plain HTTP DICOMweb,
boto3, psycopg; fhirclient for FHIR).

Runs after tests/lab/test_kubernetes.py (the cluster and its images). The lab site picks
`imaging` (appended to its site.yaml when it picks nothing); the tests of a service the site does
not pick are skipped. The images the site needs are built by scripts/build-bundle-images into the
same artifacts folder (cached; scripts/test starts it). FHIR alone, on a lab without Ceph:

    HZCLOUD_LAB_SITE=/work/labs/fhr HZCLOUD_LAB_KEEP=1 HZCLOUD_LAB_PHASES=preflight \\
        pytest -m lab tests/lab/test_bundle.py

Imaging only:

    HZCLOUD_LAB_SITE=/work/labs/bnd HZCLOUD_LAB_KEEP=1 HZCLOUD_LAB_PHASES=preflight \\
        pytest -m lab tests/lab/test_bundle.py

DICOM and DICOMweb are proved twice: on the NodePorts the way in routes to (any node, Orthanc's
own plain HTTP), and through the way in as the hospital network sees it (HTTPS by host name,
verified against the site CA only; DICOM on the way in's TCP port).
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import hzrun
import pytest
import yaml

from hzcloud import engine, wayin
from hzcloud.bundle import bundle_for_site, picked
from hzcloud.phases import port
from hzcloud.pki import ca_cert_path
from hzcloud.secrets import read_secrets

pytestmark = pytest.mark.lab

HZ = [sys.executable, "-m", "hzcloud"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle_site(converged_site: dict[str, Any], site_artifacts: Path) -> dict[str, Any]:
    """The lab with imaging installed by `hzcloud up`; the JSON of that run and its wall time."""
    site = Path(converged_site["site"])
    site_yaml = site / "site.yaml"
    if "bundle:" not in site_yaml.read_text():
        with site_yaml.open("a") as fh:
            fh.write("bundle:\n  services: [imaging]\n")
    loaded = engine.load(site)
    entries = {le.entry.name for le in picked(loaded.site, bundle_for_site(loaded.site, site))}
    build = subprocess.run(
        [
            "flock",
            f"{site_artifacts.resolve()}.lock",
            str(ROOT / "scripts/build-bundle-images"),
            str(site_artifacts.resolve()),
            # only the images of the entries the site picks: the FHIR jar's cold Maven build
            # is minutes a run without FHIR need not pay
            *hzrun.bundle_images(site),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    t0 = time.monotonic()
    # after test_kubernetes.py: the cluster is there; base (the gateway's firewall) and ingress
    # (HAProxy's routes) learn the bundle's way in from the same site.yaml
    data = hzrun.up_json(site, "base,ingress,bundle")[1]
    data["wall_seconds"] = time.monotonic() - t0
    data["site"] = str(site)
    data["entries"] = sorted(entries)
    print(f"\nbundle phase: {_phase(data, 'bundle')['seconds']} s")
    return data


@pytest.fixture(scope="module")
def imaging_site(bundle_site: dict[str, Any]) -> dict[str, Any]:
    if "imaging" not in bundle_site["entries"]:
        pytest.skip("the lab site does not pick imaging")
    return bundle_site


def _phase(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in data["phases"] if p["name"] == name)


def _routes(site: Path) -> dict[str, wayin.Route]:
    loaded = engine.load(site)
    return {r.name: r for r in wayin.routes(loaded.site, loaded.plan, loaded.site_dir)}


def _node(site: Path) -> str:
    loaded = engine.load(site)
    # the last Kubernetes node: any node answers on a NodePort, not only the pod's
    return (loaded.plan.hosts("k8s-server") + loaded.plan.hosts("k8s-agent"))[-1].address


def _get(url: str, password: str, accept: str = "") -> tuple[int, bytes, str]:
    req = urllib.request.Request(url)
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            return res.status, res.read(), res.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


def _imaging_s3(site: Path, secrets: dict[str, str]) -> Any:
    """boto3 on the first RGW with imaging's S3 keys (from the given secrets)."""
    import boto3

    rgw = engine.load(site).plan.hosts("ceph-rgw")[0].address
    return boto3.client(
        "s3",
        endpoint_url=f"http://{rgw}:{port('ceph_rgw')}",
        region_name="default",
        aws_access_key_id=secrets["bundle_imaging_s3_access_key"],
        aws_secret_access_key=secrets["bundle_imaging_s3_secret_key"],
    )


def _bundle_service(site: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One service of `hzcloud bundle status --output json`, and the whole answer."""
    status = json.loads(
        subprocess.run(
            [*HZ, "bundle", "status", site, "--output", "json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    )
    (svc,) = [s for s in status["services"] if s["name"] == name]
    return svc, status


def test_bundle_phase_installs_imaging(imaging_site: dict[str, Any]) -> None:
    assert _phase(imaging_site, "bundle")["status"] == "ok", json.dumps(imaging_site, indent=2)
    imaging, status = _bundle_service(imaging_site["site"], "imaging")
    assert imaging["state"] == "ready" and imaging["version"] == "1.10.1-1", status
    urls = {e["name"]: e["url"] for e in imaging["endpoints"]}
    assert urls["imaging"].startswith("https://imaging.") and urls["imaging-dicom"].endswith(
        ":4242"
    )


def test_dicom_store_then_dicomweb_finds_and_returns_it(imaging_site: dict[str, Any]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    site = Path(imaging_site["site"])
    routes, node = _routes(site), _node(site)
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    ds = hzrun.ct_study()
    ae = AE(ae_title="HZLABTEST")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(node, routes["imaging-dicom"].node_port, ae_title="HZCLOUD")
    assert assoc.is_established, "no DICOM association on the imaging-dicom NodePort"
    try:
        assert assoc.send_c_echo().Status == 0x0000
        t0 = time.monotonic()
        assert assoc.send_c_store(ds).Status == 0x0000
        print(f"\nC-STORE of one CT image: {time.monotonic() - t0:.2f} s")
    finally:
        assoc.release()

    base = f"http://{node}:{routes['imaging'].node_port}/dicom-web"
    code, body, kind = _get(f"{base}/studies?StudyInstanceUID={ds.StudyInstanceUID}", password)
    assert code == 200 and "application/dicom+json" in kind, (code, body[:300])
    found = json.loads(body)
    assert [s["0020000D"]["Value"][0] for s in found] == [ds.StudyInstanceUID]
    code, body, kind = _get(
        f"{base}/studies/{ds.StudyInstanceUID}",
        password,
        'multipart/related; type="application/dicom"',
    )
    assert code == 200 and kind.startswith("multipart/related"), (code, kind)
    assert ds.SOPInstanceUID.encode() in body
    # authentication is on: nothing without credentials
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{base}/studies", timeout=15)
    assert denied.value.code == 401


def test_dicom_files_are_in_the_bucket_and_the_index_in_postgres(
    imaging_site: dict[str, Any],
) -> None:
    import psycopg

    site = Path(imaging_site["site"])
    loaded = engine.load(site)
    secrets = read_secrets(site)
    s3 = _imaging_s3(site, secrets)
    objects = s3.list_objects_v2(Bucket="orthanc-dicom").get("KeyCount", 0)
    assert objects >= 1, "no DICOM file in the RGW bucket"
    # the service's S3 user owns its bucket and may make no other
    with pytest.raises(s3.exceptions.ClientError):
        s3.create_bucket(Bucket="imaging-other")
    with psycopg.connect(
        host=str(loaded.site.networks.postgres_vip),
        port=port("postgres"),
        dbname="orthanc",
        user="orthanc",
        password=secrets["bundle_imaging_postgres_password"],
        sslmode="require",
        connect_timeout=10,
    ) as conn:
        (studies,) = conn.execute(
            "SELECT count(*) FROM resources WHERE resourcetype = 1"
        ).fetchone()
    assert studies >= 1, "Orthanc's index in PostgreSQL has no study"


def test_a_second_up_changes_nothing(bundle_site: dict[str, Any]) -> None:
    site = Path(bundle_site["site"])
    data, which = hzrun.converged_again(site, "base,ingress,bundle", bundle_site)
    bundle = _phase(data, "bundle")
    print(f"\nbundle after a converged run ({which}): {bundle['seconds']} s")
    assert bundle["status"] == "ok" and bundle["changed"] == 0, json.dumps(bundle, indent=2)
    assert os.stat(site / "secrets.yaml").st_mode & 0o077 == 0


def test_bundle_verify_passes(bundle_site: dict[str, Any]) -> None:
    res = subprocess.run(
        [*HZ, "bundle", "verify", bundle_site["site"], "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert io.StringIO(res.stdout).read()


def test_through_the_way_in_with_the_site_ca(imaging_site: dict[str, Any]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    site = Path(imaging_site["site"])
    loaded = engine.load(site)
    address = wayin.ingress_address(loaded.site, loaded.plan)
    routes = _routes(site)
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    ds = hzrun.ct_study()
    ae = AE(ae_title="HZLABTEST")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(address, routes["imaging-dicom"].port, ae_title="HZCLOUD")
    assert assoc.is_established, f"no DICOM association at the way in {address}:4242"
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    context = ssl.create_default_context(cafile=str(ca_cert_path(site)))
    conn = hzrun.WayIn(address, routes["imaging"].host, context)
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    conn.request(
        "GET",
        f"/dicom-web/studies?StudyInstanceUID={ds.StudyInstanceUID}",
        headers={"Authorization": f"Basic {token}"},
    )
    res = conn.getresponse()
    body = res.read()
    assert res.status == 200, (res.status, body[:300])
    assert [s["0020000D"]["Value"][0] for s in json.loads(body)] == [ds.StudyInstanceUID]


def test_an_orthanc_pod_killed_the_studies_are_still_served(
    imaging_site: dict[str, Any],
) -> None:
    site = Path(imaging_site["site"])
    routes, node = _routes(site), _node(site)
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    url = f"http://{node}:{routes['imaging'].node_port}/dicom-web/studies"
    code, body, _ = _get(url, password)
    assert code == 200 and json.loads(body), "the tests above stored studies"
    pods = hzrun.kubectl(site, "-n", "hz-imaging", "get", "pods", "-o", "name").split()
    assert len(pods) >= 2, pods
    # no grace: the pod is gone the way a crashed process is
    hzrun.kubectl(site, "-n", "hz-imaging", "delete", pods[0], "--grace-period=0", "--force")
    t0 = time.monotonic()
    answers = []
    while time.monotonic() - t0 < 20:  # the other replica answers
        try:
            code, later, _ = _get(url, password)
            answers.append(code == 200 and json.loads(later) == json.loads(body))
        except OSError:  # a read sent to the dead pod before kube-proxy learned it is gone
            answers.append(False)
        time.sleep(1)
    # at most the second the Service needs to drop the dead pod; then every read answers
    assert answers.count(False) <= 2 and all(answers[-5:]), answers
    hzrun.wait_for(
        "imaging back to its replicas",
        lambda: _bundle_service(str(site), "imaging")[0]["state"] == "ready",
        300,
        every=5,
    )


def test_remove_then_install_keeps_credentials_and_studies(imaging_site: dict[str, Any]) -> None:
    site = Path(imaging_site["site"])
    routes, node = _routes(site), _node(site)
    before = (site / "secrets.yaml").read_bytes()
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    base = f"http://{node}:{routes['imaging'].node_port}/dicom-web"
    code, body, _ = _get(f"{base}/studies", password)
    assert code == 200
    studies = sorted(s["0020000D"]["Value"][0] for s in json.loads(body))
    assert studies, "the tests above stored studies"
    # imaging alone: the FHIR server (a JVM start of minutes) keeps running
    for argv in (["remove", str(site), "imaging"], ["install", str(site)]):
        res = subprocess.run([*HZ, "bundle", *argv], capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (site / "secrets.yaml").read_bytes() == before, "credentials made anew"
    code, body, _ = _get(f"{base}/studies", password)
    assert code == 200 and sorted(s["0020000D"]["Value"][0] for s in json.loads(body)) == studies
    code, body, _ = _get(
        f"{base}/studies/{studies[0]}", password, 'multipart/related; type="application/dicom"'
    )
    assert code == 200 and len(body) > 8192  # the pixel data came back from the bucket


# Upgrade, rollback and purge of imaging: a copy of the shipped bundle inside the site folder
# (site.yaml bundle.folder) with imaging's version moved on, as a newer hzcloud would ship it.
NEXT = "bundle-next"


def _next_bundle(site: Path, version: str, readiness: str = "") -> None:
    """site/bundle-next: the shipped bundle with imaging at `version` (same image); with a
    readiness probe path nobody answers, when given; the site's bundle.folder names it."""
    import shutil

    import yaml

    folder = site / NEXT
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "bundles" / "default", folder)
    entry_file = folder / "services" / "imaging.yaml"
    entry = yaml.safe_load(entry_file.read_text())
    entry["version"] = version
    # the new version also keeps something in Redis: its ACL user comes with the upgrade
    entry["needs"]["redis"] = {"user": "imaging", "prefix": "imaging:"}
    # a startup budget of 30 s keeps the failed rollout short (ready_within = 60 + 30 + 30 s)
    entry["probes"]["startup"] = {"tcp": {"port": 8042}, "period": 5, "failures": 6}
    if readiness:  # Orthanc answers 401 or 404 there: never ready
        entry["probes"]["readiness"] = {"http": {"path": readiness, "port": 8042}}
    entry_file.write_text(yaml.safe_dump(entry, sort_keys=False))
    site_yaml = site / "site.yaml"
    text = site_yaml.read_text()
    if f"folder: {NEXT}" not in text:
        site_yaml.write_text(text.replace("bundle:\n", f"bundle:\n  folder: {NEXT}\n", 1))


def _upgrade(site: Path) -> tuple[int, dict[str, Any]]:
    res = subprocess.run(
        [*HZ, "bundle", "upgrade", str(site), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res.returncode, json.loads(res.stdout)


def _redis_as_imaging(site: Path) -> tuple[Any, list[str]]:
    """redis-py as a service would use its need: the Sentinels with the entry's ACL user, then
    the primary; and the address of every Redis server."""
    from redis.sentinel import Sentinel

    password = read_secrets(site)["bundle_imaging_redis_password"]
    auth = {"username": "imaging", "password": password, **hzrun.REDIS_SOCKET}
    sentinels = [(n["address"], port("sentinel")) for n in hzrun.hosts_with(site, "redis-sentinel")]
    sentinel = Sentinel(sentinels, sentinel_kwargs=auth, **auth)
    master = f"{engine.load(site).plan.site}-redis"
    servers = [n["address"] for n in hzrun.hosts_with(site, "redis")]
    return sentinel.master_for(master), servers


def _studies(site: Path) -> list[str]:
    routes, node = _routes(site), _node(site)
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    code, body, _ = _get(f"http://{node}:{routes['imaging'].node_port}/dicom-web/studies", password)
    assert code == 200, (code, body[:300])
    return sorted(s["0020000D"]["Value"][0] for s in json.loads(body))


def test_upgrade_rolls_imaging_and_keeps_credentials_and_studies(
    imaging_site: dict[str, Any],
) -> None:
    site = Path(imaging_site["site"])
    studies, before = _studies(site), (site / "secrets.yaml").read_bytes()
    assert studies, "the tests above stored studies"
    _next_bundle(site, "1.10.1-2")
    rc, data = _upgrade(site)
    print(f"\nupgrade: {json.dumps(data['services'])}")
    assert rc == 0 and data["ok"], data
    moves = {m["name"]: m for m in data["services"]}
    assert moves["imaging"]["from"] == "1.10.1-1" and moves["imaging"]["result"] == "upgraded"
    assert all(m["result"] == "current" for n, m in moves.items() if n != "imaging"), moves
    imaging, status = _bundle_service(str(site), "imaging")
    assert (imaging["version"], imaging["state"]) == ("1.10.1-2", "ready"), status
    assert _studies(site) == studies
    # the Redis need: a user on every server and Sentinel, limited to its prefix
    import redis

    primary, servers = _redis_as_imaging(site)
    primary.set("imaging:probe", "1")
    assert primary.get("imaging:probe") == b"1"
    for forbidden in (lambda: primary.set("other:probe", "1"), lambda: primary.config_get("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    password = read_secrets(site)["bundle_imaging_redis_password"]
    for address in servers:  # ACL users are per server: each one knows it
        redis.Redis(address, port("redis"), username="imaging", password=password).ping()
    # the secrets that were there are unchanged; the Redis password is the only new one
    old, new = yaml.safe_load(before), read_secrets(site)
    assert {k: new[k] for k in old} == old and set(new) - set(old) <= {
        "bundle_imaging_redis_password"
    }


def test_an_upgrade_that_never_gets_ready_is_rolled_back_while_the_old_one_serves(
    imaging_site: dict[str, Any],
) -> None:
    import threading

    site = Path(imaging_site["site"])
    studies = _studies(site)
    _next_bundle(site, "1.10.1-3", readiness="/never-ready")
    served: list[bool] = []
    done = threading.Event()

    def watch() -> None:  # a viewer asking for the study list all through the upgrade
        while not done.is_set():
            try:
                served.append(_studies(site) == studies)
            except (AssertionError, OSError):
                served.append(False)
            done.wait(2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        rc, data = _upgrade(site)
    finally:
        done.set()
        watcher.join(30)
    print(f"\nfailed upgrade and rollback: {time.monotonic() - t0:.0f} s, {len(served)} reads")
    assert rc == 1 and not data["ok"], data
    moves = {m["name"]: m for m in data["services"]}
    assert moves["imaging"]["result"] == "rolled back", moves
    assert "rolled back to 1.10.1-2" in data["error"]["message"], data["error"]
    imaging, status = _bundle_service(str(site), "imaging")
    assert (imaging["version"], imaging["state"]) == ("1.10.1-2", "ready"), status
    assert served and all(served), f"{served.count(False)} of {len(served)} reads failed"


def test_purge_deletes_the_data_and_an_install_starts_afresh(
    imaging_site: dict[str, Any],
) -> None:

    site = Path(imaging_site["site"])
    old = read_secrets(site)
    res = subprocess.run(
        [*HZ, "bundle", "remove", str(site), "imaging", "--purge", "--yes", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    said = json.loads(res.stdout)
    assert said["removed"] == ["imaging"], said
    assert any("orthanc-dicom" in d for d in said["purged"][0]["deletes"]), said
    assert "bundle_imaging_postgres_password" not in read_secrets(site)
    with hzrun.pg_connect(site) as conn:
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'orthanc'").fetchall()
        assert not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'orthanc'").fetchall()
    s3 = _imaging_s3(site, old)
    with pytest.raises(s3.exceptions.ClientError):  # the S3 user is gone with its bucket
        s3.list_objects_v2(Bucket="orthanc-dicom")
    import redis

    for node in hzrun.hosts_with(site, "redis"):  # the ACL user is gone from every server
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(
                node["address"],
                port("redis"),
                username="imaging",
                password=old["bundle_imaging_redis_password"],
            ).ping()
    # back to the shipped bundle: a first install again, with new credentials and no study
    site_yaml = site / "site.yaml"
    site_yaml.write_text(site_yaml.read_text().replace(f"  folder: {NEXT}\n", ""))
    res = subprocess.run(
        [*HZ, "bundle", "install", str(site)], capture_output=True, text=True, timeout=1800
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    new = read_secrets(site)
    assert new["bundle_imaging_postgres_password"] != old["bundle_imaging_postgres_password"]
    imaging, status = _bundle_service(str(site), "imaging")
    assert (imaging["version"], imaging["state"]) == ("1.10.1-1", "ready"), status
    assert _studies(site) == []


# FHIR: the patient index, codes, records and orders, through the way in as the hospital network
# sees it (https://fhir.<domain>/fhir, verified against the site CA only) with fhirclient.


@pytest.fixture(scope="module")
def fhir_site(bundle_site: dict[str, Any]) -> dict[str, Any]:
    if "fhir" not in bundle_site["entries"]:
        pytest.skip("the lab site does not pick patient-index/codes/records/orders")
    return bundle_site


@pytest.fixture(scope="module")
def fhir(fhir_site: dict[str, Any]) -> Any:
    """A fhirclient FHIRClient on https://fhir.<domain>/fhir. The hospital's DNS would answer
    fhir.<domain> with the way in's address: here getaddrinfo does, for that one name."""
    from fhirclient import client

    site = Path(fhir_site["site"])
    loaded = engine.load(site)
    address = wayin.ingress_address(loaded.site, loaded.plan)
    host = _routes(site)["fhir"].host
    real = socket.getaddrinfo

    def resolve(name: Any, *args: Any, **kw: Any) -> Any:
        return real(address if name == host else name, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", resolve)
        smart = client.FHIRClient(
            settings={"app_id": "hzcloud-lab", "api_base": f"https://{host}/fhir"}
        )
        # the site CA, nothing else: without trust_env, requests would take REQUESTS_CA_BUNDLE
        # from the environment over the session's verify
        smart.server.session.trust_env = False
        smart.server.session.verify = str(ca_cert_path(site))
        smart.mrn_system = f"https://{loaded.site.hospital.site_domain}/mrn"
        yield smart


def _patient(smart: Any, mrn: str, family: str = "Lab") -> Any:
    from fhirclient.models.patient import Patient

    return Patient(
        {
            "resourceType": "Patient",
            "identifier": [{"system": smart.mrn_system, "value": mrn}],
            "name": [{"family": family, "given": ["Test"]}],
            "gender": "female",
            "birthDate": "1970-01-01",
        }
    )


def _created_id(response: Any) -> str:
    assert isinstance(response, dict) and response.get("id"), response
    return str(response["id"])


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def test_bundle_phase_installs_fhir(fhir_site: dict[str, Any]) -> None:
    assert _phase(fhir_site, "bundle")["status"] == "ok", json.dumps(fhir_site, indent=2)
    svc, status = _bundle_service(fhir_site["site"], "fhir")
    assert svc["state"] == "ready" and svc["version"] == "8.8.0-1", status
    urls = {e["name"]: e["url"] for e in svc["endpoints"]}
    assert urls["fhir"].startswith("https://fhir."), urls


def test_fhir_patient_by_mrn_and_duplicates_refused(fhir: Any) -> None:
    from fhirclient.models.patient import Patient
    from requests.exceptions import HTTPError

    run = f"{int(time.time())}"
    created: list[float] = []
    found: list[float] = []
    for i in range(10):
        mrn = f"MRN-{run}-{i}"
        t0 = time.monotonic()
        pid = _created_id(_patient(fhir, mrn).create(fhir.server))
        created.append(time.monotonic() - t0)
        t0 = time.monotonic()
        hits = Patient.where(struct={"identifier": f"{fhir.mrn_system}|{mrn}"}).perform_resources(
            fhir.server
        )
        found.append(time.monotonic() - t0)
        assert [p.id for p in hits] == [pid], (mrn, [p.id for p in hits])
        assert hits[0].identifier[0].value == mrn
    print(
        f"\nFHIR through the way in: Patient create p50 {_pct(created, 0.5) * 1000:.0f} ms "
        f"p95 {_pct(created, 0.95) * 1000:.0f} ms; search by MRN p50 "
        f"{_pct(found, 0.5) * 1000:.0f} ms p95 {_pct(found, 0.95) * 1000:.0f} ms"
    )
    # the same MRN again: refused by the unique index, never a second patient, never merged
    with pytest.raises(HTTPError) as dup:
        _patient(fhir, f"MRN-{run}-0", family="Other").create(fhir.server)
    assert dup.value.response.status_code == 409, dup.value.response.text[:500]
    assert "duplicate unique index" in dup.value.response.text
    hits = Patient.where(struct={"identifier": f"{fhir.mrn_system}|MRN-{run}-0"}).perform_resources(
        fhir.server
    )
    assert len(hits) == 1 and hits[0].name[0].family == "Lab"
    # a Patient without the hospital's MRN has no place in the index
    nameless = Patient({"resourceType": "Patient", "name": [{"family": "NoMrn"}]})
    with pytest.raises(HTTPError) as none:
        nameless.create(fhir.server)
    assert none.value.response.status_code == 422, none.value.response.text[:500]


def test_fhir_condition_orders_and_record_reference_the_patient(fhir: Any) -> None:
    from fhirclient.models.condition import Condition
    from fhirclient.models.documentreference import DocumentReference
    from fhirclient.models.medicationrequest import MedicationRequest
    from fhirclient.models.servicerequest import ServiceRequest

    pid = _created_id(_patient(fhir, f"MRN-{int(time.time())}-rec").create(fhir.server))
    subject = {"reference": f"Patient/{pid}"}
    condition = Condition(
        {
            "resourceType": "Condition",
            "subject": subject,
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10",
                        "code": "I10",
                        "display": "Essential (primary) hypertension",
                    }
                ]
            },
        }
    )
    medication = MedicationRequest(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": subject,
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.whocc.no/atc", "code": "C09AA05"}],
                "text": "ramipril 5 mg once daily",
            },
        }
    )
    service = ServiceRequest(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": subject,
            "code": {"text": "Chest X-ray, two views"},
        }
    )
    document = DocumentReference(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": subject,
            "description": "Admission note",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(b"Admitted for hypertension review.").decode(),
                    }
                }
            ],
        }
    )
    ids = {}
    for res in (condition, medication, service, document):
        ids[res.resource_type] = _created_id(res.create(fhir.server))
    for cls in (Condition, MedicationRequest, ServiceRequest, DocumentReference):
        hits = cls.where(struct={"subject": f"Patient/{pid}"}).perform_resources(fhir.server)
        assert [h.id for h in hits] == [ids[cls.resource_type]], cls.resource_type
    (cond,) = Condition.where(
        struct={"code": "http://hl7.org/fhir/sid/icd-10|I10", "subject": f"Patient/{pid}"}
    ).perform_resources(fhir.server)
    assert cond.subject.reference == f"Patient/{pid}"
    # a reference to a patient that does not exist is refused (referential integrity)
    from requests.exceptions import HTTPError

    orphan = Condition(
        {"resourceType": "Condition", "subject": {"reference": "Patient/does-not-exist"}}
    )
    with pytest.raises(HTTPError):
        orphan.create(fhir.server)


def _validate(fhir: Any, path: str) -> tuple[bool, str]:
    from fhirclient.models.parameters import Parameters

    params = Parameters(fhir.server.request_json(path))
    values = {p.name: p for p in params.parameter}
    message = values["message"].valueString if "message" in values else ""
    return bool(values["result"].valueBoolean), message


def test_fhir_validate_code_knows_the_loaded_terminology(fhir: Any) -> None:
    from urllib.parse import urlencode

    icd = "http://hl7.org/fhir/sid/icd-10"
    ok, _ = _validate(fhir, "CodeSystem/$validate-code?" + urlencode({"url": icd, "code": "I10"}))
    assert ok
    ok, message = _validate(
        fhir, "CodeSystem/$validate-code?" + urlencode({"url": icd, "code": "X99.99"})
    )
    assert not ok and "X99.99" in message
    domain = fhir.mrn_system.removeprefix("https://").removesuffix("/mrn")
    atc_vs = f"https://{domain}/fhir/ValueSet/atc-subset"
    query = {"url": atc_vs, "system": "http://www.whocc.no/atc"}
    ok, _ = _validate(fhir, "ValueSet/$validate-code?" + urlencode({**query, "code": "N02BE01"}))
    assert ok
    ok, _ = _validate(fhir, "ValueSet/$validate-code?" + urlencode({**query, "code": "Z99ZZ99"}))
    assert not ok


def test_fhir_writes_survive_the_postgres_leader_power_cut(
    fhir: Any, fhir_site: dict[str, Any]
) -> None:
    """The Patroni leader's node loses power under a stream of Patient creates through the way
    in: creates stop, then resume on the new leader, and every acknowledged Patient is there."""
    from fhirclient.models.patient import Patient

    site = Path(fhir_site["site"])
    hzrun.wait_for("a healthy PostgreSQL cluster", lambda: hzrun.pg_cluster_healthy(site), 180)
    old = hzrun.patroni_role(hzrun.patroni_members(site), "Leader")
    assert old
    if any(h["name"] == old for h in hzrun.hosts_with(site, "gateway")):
        # the way in lives on the gateway: with one gateway, its power cut is a different drill
        pytest.skip(f"the PostgreSQL leader {old} is the lab's only gateway (the way in)")
    run = f"DRILL-{int(time.time())}"
    ids: dict[int, str] = {}

    def write(i: int) -> None:
        ids[i] = _created_id(_patient(fhir, f"{run}-{i}").create(fhir.server))

    writer = hzrun.Writer(write, pause=0.2)
    writer.start()
    time.sleep(10)
    t_kill = time.time()
    try:
        hzrun.lab_verb(site, "kill", old)
        resumed = hzrun._wait_resumed(writer.writes, t_kill, timeout=600)
    finally:
        writes = writer.finish()
    try:
        assert resumed is not None, f"FHIR writes never resumed after {old}'s power cut"
        missing = []
        for _, i in writes.acked:
            for attempt in range(3):  # an error while the cluster settles is asked again
                try:
                    Patient.read(ids[i], fhir.server)
                    break
                except Exception as exc:  # not read back after three tries: lost
                    if attempt == 2:
                        missing.append((i, ids.get(i), str(exc)[:80]))
                    else:
                        time.sleep(2)
        assert not missing, f"{len(missing)} of {len(writes.acked)} acknowledged Patients lost"
        print(
            f"\nFHIR under a PostgreSQL leader power cut ({old}): longest gap without an "
            f"acknowledged write {writes.outage(t_kill):.1f} s, "
            f"{len(writes.acked)} Patients acknowledged, {len(writes.failed)} refused, none lost"
        )
    finally:
        hzrun.node_back(site, old)
