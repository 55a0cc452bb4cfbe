"""Benchmark: the clinical bundle on a converged lab, as the hospital network reaches it.

    python benchmarks/bundle.py [--site lab] [--fhir 100] [--dicom 100] [--reinstall] [--json]

Prints:
- the bundle phase: a converged re-run (`hzcloud up SITE --only bundle`), and with --reinstall
  the install of the workloads after `hzcloud bundle remove` (needs, data and images kept);
- FHIR through the way in (https://fhir.<domain>/fhir, the site CA): create Patient and search
  by identifier, p50/p95/max per request, one client;
- DICOM C-STORE through the way in (tcp://imaging.<domain>:4242): one association, N generated
  CT instances (64x64, 16 bit), instances/s and MB/s.
The lab must be up with the bundle installed (`hzcloud up SITE`, a site that picks imaging and
the FHIR services).
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lab"))

import hzrun  # the lab tests' helpers: the way in's HTTPS connection, a generated study

from hzcloud import engine, wayin
from hzcloud.pki import ca_cert_path

HZ = [sys.executable, "-m", "hzcloud"]


def _pcts(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def _phase(site: Path, argv: list[str]) -> dict[str, Any]:
    t0 = time.monotonic()
    res = subprocess.run([*HZ, *argv], capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    data = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
    bundle = next((p for p in data.get("phases", []) if p["name"] == "bundle"), {})
    return {"wall_s": round(wall, 1), "changed": bundle.get("changed")}


def bundle_phase(site: Path, reinstall: bool) -> dict[str, Any]:
    out = {"rerun": _phase(site, ["up", str(site), "--only", "bundle", "--output", "json"])}
    if reinstall:
        out["remove"] = _phase(site, ["bundle", "remove", str(site)])
        out["install"] = _phase(site, ["bundle", "install", str(site), "--output", "json"])
    return out


def fhir(site: Path, n: int) -> dict[str, Any]:
    loaded = engine.load(site)
    address = wayin.ingress_address(loaded.site, loaded.plan)
    host = {r.name: r for r in wayin.routes(loaded.site, loaded.plan, site)}["fhir"].host
    context = ssl.create_default_context(cafile=str(ca_cert_path(site)))
    system = f"https://{loaded.site.hospital.site_domain}/mrn"
    conn = hzrun.WayIn(address, host, context)
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    run = uuid.uuid4().hex[:8]

    def request(method: str, path: str, body: dict[str, Any] | None = None) -> float:
        t0 = time.monotonic()
        conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        res = conn.getresponse()
        res.read()
        if res.status >= 300:
            raise SystemExit(f"{method} {path}: {res.status}")
        return time.monotonic() - t0

    creates, searches = [], []
    for i in range(n):
        mrn = f"BENCH-{run}-{i:05d}"
        patient = {
            "resourceType": "Patient",
            "identifier": [{"system": system, "value": mrn}],
            "name": [{"family": "Bench", "given": [f"P{i}"]}],
            "gender": "unknown",
        }
        creates.append(request("POST", "/fhir/Patient", patient))
    for i in range(n):
        mrn = f"BENCH-{run}-{i:05d}"
        searches.append(request("GET", f"/fhir/Patient?identifier={system}|{mrn}"))
    conn.close()
    return {"create_patient": _pcts(creates), "search_by_identifier": _pcts(searches)}


def dicom(site: Path, n: int) -> dict[str, Any]:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    loaded = engine.load(site)
    address = wayin.ingress_address(loaded.site, loaded.plan)
    route = {r.name: r for r in wayin.routes(loaded.site, loaded.plan, site)}["imaging-dicom"]
    studies = [hzrun.ct_study() for _ in range(n)]
    size = sum(len(ds.PixelData) for ds in studies)
    ae = AE(ae_title="HZBENCH")
    ae.add_requested_context(CTImageStorage)
    t0 = time.monotonic()
    assoc = ae.associate(address, route.port, ae_title="HZCLOUD")
    if not assoc.is_established:
        raise SystemExit(f"no DICOM association at the way in {address}:{route.port}")
    lat = []
    try:
        for ds in studies:
            t1 = time.monotonic()
            status = assoc.send_c_store(ds)
            lat.append(time.monotonic() - t1)
            if status.Status != 0x0000:
                raise SystemExit(f"C-STORE failed: 0x{status.Status:04x}")
    finally:
        assoc.release()
    wall = time.monotonic() - t0
    return {
        "instances": n,
        "seconds": round(wall, 2),
        "instances_per_s": round(n / wall, 1),
        "pixel_mb_per_s": round(size / wall / 1e6, 2),
        "c_store": _pcts(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default="lab")
    ap.add_argument("--fhir", type=int, default=100, help="patients to create, then search")
    ap.add_argument("--dicom", type=int, default=100, help="CT instances to C-STORE")
    ap.add_argument("--reinstall", action="store_true", help="also remove + install the workloads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    site = Path(args.site).resolve()
    result: dict[str, Any] = {"bundle_phase": bundle_phase(site, args.reinstall)}
    if args.fhir:
        result["fhir"] = fhir(site, args.fhir)
    if args.dicom:
        result["dicom"] = dicom(site, args.dicom)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, figures in result["bundle_phase"].items():
        print(f"bundle phase {name:8} {figures['wall_s']:7.1f} s  changed {figures['changed']}")
    for name, f in result.get("fhir", {}).items():
        print(
            f"fhir {name:22} n={f['n']:4}  p50 {f['p50_ms']:7.1f} ms  p95 {f['p95_ms']:7.1f} ms"
            f"  max {f['max_ms']:7.1f} ms"
        )
    if "dicom" in result:
        d = result["dicom"]
        print(
            f"dicom c-store via the way in  {d['instances']} instances in {d['seconds']} s: "
            f"{d['instances_per_s']}/s, {d['pixel_mb_per_s']} MB/s of pixels, "
            f"p50 {d['c_store']['p50_ms']} ms p95 {d['c_store']['p95_ms']} ms"
        )


if __name__ == "__main__":
    main()
