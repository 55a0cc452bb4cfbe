"""Installing the bundle without a cluster: credentials, resolved references, the phase's inputs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from hzcloud import bundle, wayin
from hzcloud.engine import load
from hzcloud.phases import bundle as phase
from hzcloud.secrets import ensure_named, ensure_secrets, read_secrets


@pytest.fixture
def imaging_site(lab_dir: Path) -> Path:
    with (lab_dir / "site.yaml").open("a") as fh:
        fh.write("bundle:\n  services: [imaging]\n")
    ensure_secrets(lab_dir)
    return lab_dir


def _imaging() -> bundle.Entry:
    le = bundle.load_bundle(bundle.default_bundle_dir()).entry_for("imaging")
    assert le is not None
    return le.entry


def test_credentials_are_made_once_and_kept(imaging_site: Path) -> None:
    keys = list(bundle.secret_keys(_imaging()).values())
    assert sorted(keys) == [
        "bundle_imaging_postgres_password",
        "bundle_imaging_s3_access_key",
        "bundle_imaging_s3_secret_key",
        "bundle_imaging_secret_admin",
    ]
    first = ensure_named(imaging_site, keys)
    mode = stat.S_IMODE((imaging_site / "secrets.yaml").stat().st_mode)
    assert mode == 0o600
    assert ensure_named(imaging_site, keys) == first  # a second install makes nothing anew
    on_disk = yaml.safe_load((imaging_site / "secrets.yaml").read_text())
    assert {k: on_disk[k] for k in keys} == first
    assert "pulumi_passphrase" in read_secrets(imaging_site)  # the site's own are kept


def test_references_resolve_and_secrets_stay_out_of_the_config(imaging_site: Path) -> None:
    loaded = load(imaging_site)
    entry = _imaging()
    secrets = ensure_named(imaging_site, bundle.secret_keys(entry).values())
    known = bundle.values(
        loaded.site, loaded.plan, entry, secrets, {"postgres": 5432, "redis": 6379, "s3": 7480}
    )
    out = bundle.render_entry(entry, known)
    cfg = json.loads(out.config["/etc/orthanc/orthanc.json"])
    # pods ask the cluster DNS for the site's names
    assert cfg["PostgreSQL"]["Host"] == f"postgres.{loaded.site.hospital.site_domain}"
    assert cfg["PostgreSQL"]["Port"] == 5432
    assert cfg["PostgreSQL"]["Password"] == "${ORTHANC_PG_PASSWORD}"  # Orthanc's own, unresolved
    every = "".join(out.config.values()) + "".join(out.env.values())
    for value in secrets.values():
        assert value not in every, "a credential in a ConfigMap or a plain variable"
    assert set(out.secret_env) == {
        "ORTHANC_ADMIN_PASSWORD",
        "ORTHANC_PG_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert out.env["S3_ENDPOINT"] == f"http://s3.{loaded.site.hospital.site_domain}:7480"
    assert out.env["AWS_CA_BUNDLE"] == bundle.CA_FILE


def test_the_playbook_gets_key_names_never_values(imaging_site: Path) -> None:
    loaded = load(imaging_site)
    secrets = ensure_named(imaging_site, bundle.secret_keys(_imaging()).values())
    extra = phase.extravars(loaded.site, loaded.plan, loaded.site_dir)
    text = json.dumps(extra)
    assert not any(v in text for v in secrets.values())
    (entry,) = extra["bundle_needs_entries"]
    assert entry["postgres"] == {
        "database": "orthanc",
        "role": "orthanc",
        "password_var": "bundle_imaging_postgres_password",
    }
    assert entry["s3"]["bucket"] == "orthanc-dicom" and entry["s3"]["user"] == "hz-imaging"
    # Ansible runs on the nodes, which do not ask the cluster DNS: addresses
    assert extra["bundle_needs_postgres_host"] == str(loaded.site.networks.postgres_vip)
    assert extra["bundle_images_list"] == [
        {"ref": "hzcloud.local/orthanc:1.10.1-1", "file": "images/orthanc-1.10.1-1.tar"}
    ]


def test_endpoints_are_the_way_ins_routes_with_the_site_ca(imaging_site: Path) -> None:
    loaded = load(imaging_site)
    eps = {e.name: e for e in phase.PHASE.endpoints(loaded.site, loaded.plan, loaded.site_dir)}
    assert set(eps) == {"imaging", "imaging-dicom"}
    domain = loaded.site.hospital.site_domain
    assert eps["imaging"].url == f"https://imaging.{domain}/"
    assert eps["imaging-dicom"].url == f"tcp://imaging.{domain}:4242"
    assert eps["imaging"].ca.endswith("pki/ca.crt")
    routes = wayin.routes(loaded.site, loaded.plan, loaded.site_dir)
    assert {r.namespace for r in routes if r.name.startswith("imaging")} == {"hz-imaging"}


def test_the_phase_needs_the_image_archive(imaging_site: Path) -> None:
    loaded = load(imaging_site)
    needs = phase.PHASE.needs(loaded.site, loaded.site_dir)
    assert any(n.path.name == "orthanc-1.10.1-1.tar" for n in needs)
    assert "scripts/build-bundle-images" in next(
        n.fix for n in needs if n.path.name == "orthanc-1.10.1-1.tar"
    )
