"""The bundle phase for real on the lab: imaging (Orthanc) installed by `hzcloud up`, then proved
with clients nobody here wrote (pydicom, pynetdicom, plain HTTP DICOMweb, boto3, psycopg).

Runs after tests/lab/test_kubernetes.py (the cluster and its images). The lab site picks
`imaging` (appended to its site.yaml when it picks nothing). The Orthanc image is built by
scripts/build-bundle-images into the same artifacts folder (cached; scripts/test starts it):

    HZCLOUD_LAB_SITE=/work/labs/bnd HZCLOUD_LAB_KEEP=1 HZCLOUD_LAB_PHASES=preflight \\
        pytest -m lab tests/lab/test_bundle.py

DICOM and DICOMweb are proved twice: on the NodePorts the way in routes to (any node, Orthanc's
own plain HTTP), and through the way in as the hospital network sees it (HTTPS by host name,
verified against the site CA only; DICOM on the way in's TCP port).
"""

from __future__ import annotations

import base64
import http.client
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

from hzcloud import engine, wayin
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
    build = subprocess.run(
        [
            "flock",
            f"{site_artifacts.resolve()}.lock",
            str(ROOT / "scripts/build-bundle-images"),
            str(site_artifacts.resolve()),
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
    print(f"\nbundle phase: {_phase(data, 'bundle')['seconds']} s")
    return data


def _phase(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in data["phases"] if p["name"] == name)


def _routes(site: Path) -> dict[str, wayin.Route]:
    loaded = engine.load(site)
    return {r.name: r for r in wayin.routes(loaded.site, loaded.plan, loaded.site_dir)}


def _node(site: Path) -> str:
    loaded = engine.load(site)
    # the last Kubernetes node: any node answers on a NodePort, not only the pod's
    return (loaded.plan.hosts("k8s-server") + loaded.plan.hosts("k8s-agent"))[-1].address


def _ct_study() -> Any:
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


def test_bundle_phase_installs_imaging(bundle_site: dict[str, Any]) -> None:
    assert _phase(bundle_site, "bundle")["status"] == "ok", json.dumps(bundle_site, indent=2)
    status = json.loads(
        subprocess.run(
            [*HZ, "bundle", "status", bundle_site["site"], "--output", "json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    )
    (imaging,) = [s for s in status["services"] if s["name"] == "imaging"]
    assert imaging["state"] == "ready" and imaging["version"] == "1.10.1-1", status
    urls = {e["name"]: e["url"] for e in imaging["endpoints"]}
    assert urls["imaging"].startswith("https://imaging.") and urls["imaging-dicom"].endswith(
        ":4242"
    )


def test_dicom_store_then_dicomweb_finds_and_returns_it(bundle_site: dict[str, Any]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    site = Path(bundle_site["site"])
    routes, node = _routes(site), _node(site)
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    ds = _ct_study()
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
    bundle_site: dict[str, Any],
) -> None:
    import boto3
    import psycopg

    site = Path(bundle_site["site"])
    loaded = engine.load(site)
    secrets = read_secrets(site)
    rgw = loaded.plan.hosts("ceph-rgw")[0].address
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{rgw}:{port('ceph_rgw')}",
        region_name="default",
        aws_access_key_id=secrets["bundle_imaging_s3_access_key"],
        aws_secret_access_key=secrets["bundle_imaging_s3_secret_key"],
    )
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
    t0 = time.monotonic()
    data = hzrun.up_json(site, "bundle")[1]
    bundle = _phase(data, "bundle")
    print(f"\nsecond bundle run: {time.monotonic() - t0:.0f} s")
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


class _WayIn(http.client.HTTPSConnection):
    """HTTPS to https://NAME/ at the way in's address: SNI and verification use NAME."""

    def __init__(self, address: str, name: str, context: ssl.SSLContext) -> None:
        super().__init__(name, 443, context=context, timeout=15)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def test_through_the_way_in_with_the_site_ca(bundle_site: dict[str, Any]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    site = Path(bundle_site["site"])
    loaded = engine.load(site)
    address = wayin.ingress_address(loaded.site, loaded.plan)
    routes = _routes(site)
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    ds = _ct_study()
    ae = AE(ae_title="HZLABTEST")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(address, routes["imaging-dicom"].port, ae_title="HZCLOUD")
    assert assoc.is_established, f"no DICOM association at the way in {address}:4242"
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    context = ssl.create_default_context(cafile=str(ca_cert_path(site)))
    conn = _WayIn(address, routes["imaging"].host, context)
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


def test_remove_then_install_keeps_credentials_and_studies(bundle_site: dict[str, Any]) -> None:
    site = Path(bundle_site["site"])
    routes, node = _routes(site), _node(site)
    before = (site / "secrets.yaml").read_bytes()
    password = read_secrets(site)["bundle_imaging_secret_admin"]
    base = f"http://{node}:{routes['imaging'].node_port}/dicom-web"
    code, body, _ = _get(f"{base}/studies", password)
    assert code == 200
    studies = sorted(s["0020000D"]["Value"][0] for s in json.loads(body))
    assert studies, "the tests above stored studies"
    for verb in ("remove", "install"):
        res = subprocess.run(
            [*HZ, "bundle", verb, str(site)], capture_output=True, text=True, timeout=1200
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (site / "secrets.yaml").read_bytes() == before, "credentials made anew"
    code, body, _ = _get(f"{base}/studies", password)
    assert code == 200 and sorted(s["0020000D"]["Value"][0] for s in json.loads(body)) == studies
    code, body, _ = _get(
        f"{base}/studies/{studies[0]}", password, 'multipart/related; type="application/dicom"'
    )
    assert code == 200 and len(body) > 8192  # the pixel data came back from the bucket
