"""Installing the bundle without a cluster: credentials, resolved references, the phase's inputs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from conftest import pick_services

from hzcloud import bundle, wayin
from hzcloud.engine import load
from hzcloud.phases import bundle as phase
from hzcloud.secrets import ensure_named, ensure_secrets, read_secrets


@pytest.fixture
def imaging_site(lab_dir: Path) -> Path:
    pick_services(lab_dir, ["imaging"])
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
    # the images stream from the control node through the SSH configuration render writes
    assert extra["bundle_images_ssh_config"] == str(loaded.site_dir / "state" / "ssh_config")


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


@pytest.fixture
def fhir_site(lab_dir: Path) -> Path:
    pick_services(lab_dir, ["patient-index", "codes"])
    ensure_secrets(lab_dir)
    return lab_dir


def test_fhir_resources_to_load_name_the_sites_mrn_system(fhir_site: Path) -> None:
    loaded = load(fhir_site)
    le = bundle.load_bundle(bundle.default_bundle_dir()).entry_for("patient-index")
    assert le is not None
    entry = le.entry
    secrets = ensure_named(fhir_site, bundle.secret_keys(entry).values())
    known = bundle.values(
        loaded.site, loaded.plan, entry, secrets, {"postgres": 5432, "redis": 0, "s3": 0}
    )
    out = bundle.render_entry(entry, known)
    domain = loaded.site.hospital.site_domain
    assert out.env["HZCLOUD_FHIR_MRN_SYSTEM"] == f"https://{domain}/mrn"
    bodies = {path: json.loads(body) for path, body in out.load}
    # each resource is PUT at its own id: a re-install writes the same one again
    for path, body in bodies.items():
        assert path == f"/fhir/{body['resourceType']}/{body['id']}"
    mrn = bodies["/fhir/SearchParameter/patient-mrn"]
    assert mrn["expression"] == f"Patient.identifier.where(system='https://{domain}/mrn')"
    unique = bodies["/fhir/SearchParameter/patient-mrn-unique"]
    assert unique["extension"] == [
        {"url": "http://hapifhir.io/fhir/StructureDefinition/sp-unique", "valueBoolean": True}
    ]
    icd = bodies["/fhir/CodeSystem/icd-10-subset"]
    assert icd["url"] == "http://hl7.org/fhir/sid/icd-10" and icd["content"] == "complete"
    # a small subset, and said to be one
    assert 10 <= len(icd["concept"]) <= 100 and "subset" in icd["copyright"]
    for value in secrets.values():
        assert all(value not in body for _, body in out.load)


def test_a_secret_in_a_loaded_resource_is_refused(tmp_path: Path) -> None:
    import shutil

    from hzcloud.errors import SiteError

    folder = tmp_path / "b"
    shutil.copytree(bundle.default_bundle_dir(), folder)
    entry = folder / "services" / "fhir.yaml"
    text = entry.read_text().replace(
        "      description: One Patient per MRN\n",
        "      description: ${needs.postgres.password}\n",
    )
    entry.write_text(text + "  - path: /fhir/ValueSet/atc-subset\n    body: {}\n")
    with pytest.raises(SiteError) as err:
        bundle.load_bundle(folder)
    whats = [(p.key, p.what) for p in err.value.problems]
    assert any(k == "load[1].body" and "is secret and a loaded resource" in w for k, w in whats), (
        whats
    )
    assert any("loaded twice" in w for _, w in whats), whats


def test_a_new_version_gets_its_probes_budget_to_become_ready() -> None:
    entry = _imaging()
    probes = entry.probes
    assert probes.startup is not None
    budget = probes.startup.period * probes.startup.failures
    budget += probes.readiness.period * probes.readiness.failures
    assert bundle.ready_within(entry) == 60 + budget
    slower = entry.model_copy(
        update={"probes": probes.model_copy(update={"startup": None})}, deep=True
    )
    assert bundle.ready_within(slower) < bundle.ready_within(entry)


def test_the_last_ready_entry_is_kept_and_a_damaged_record_is_no_rollback_target(
    tmp_path: Path,
) -> None:
    entry = _imaging()
    assert phase.last_ready(tmp_path, "imaging") is None
    phase._record(tmp_path, entry)
    assert phase.last_ready(tmp_path, "imaging") == entry
    newer = entry.model_copy(update={"version": "1.10.1-2"})
    phase._record(tmp_path, newer)
    assert phase.last_ready(tmp_path, "imaging") == newer != entry
    phase.record_path(tmp_path, "imaging").write_text("{not json")
    assert phase.last_ready(tmp_path, "imaging") is None


def test_purge_lists_the_data_it_deletes_and_forgets_only_the_entrys_credentials(
    imaging_site: Path,
) -> None:
    ld = load(imaging_site)
    made = phase.credentials(imaging_site, phase.picked(ld.site, imaging_site))
    (gone,) = phase.purge_list(ld.site, ld.plan, imaging_site)
    assert gone["name"] == "imaging"
    said = " ".join(gone["deletes"])
    assert "PostgreSQL database orthanc" in said and "role orthanc" in said
    assert "S3 bucket orthanc-dicom with every object" in said and "hz-imaging" in said
    assert all(key in said for key in made)
    from hzcloud.secrets import forget_named

    site_keys = set(read_secrets(imaging_site)) - set(made)
    assert sorted(forget_named(imaging_site, [*made, "postgres_superuser_password"])) == sorted(
        made
    )
    assert set(read_secrets(imaging_site)) == site_keys, "the site's own secrets are kept"
    mode = (imaging_site / "secrets.yaml").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_purge_without_yes_deletes_nothing_and_says_what_it_would(imaging_site: Path) -> None:
    from typer.testing import CliRunner

    from hzcloud.app import app

    before = (imaging_site / "secrets.yaml").read_bytes()
    res = CliRunner().invoke(app, ["bundle", "remove", str(imaging_site), "--purge"])
    assert res.exit_code == 2, res.output
    assert "was not confirmed" in res.output and "orthanc-dicom" in res.output
    assert "Traceback" not in res.output
    assert (imaging_site / "secrets.yaml").read_bytes() == before
    assert not (imaging_site / "state" / "journal.jsonl").exists()


def test_remove_refuses_a_service_the_site_does_not_pick(imaging_site: Path) -> None:
    from typer.testing import CliRunner

    from hzcloud.app import app

    res = CliRunner().invoke(app, ["bundle", "remove", str(imaging_site), "records"])
    assert res.exit_code == 2, res.output
    assert "does not pick 'records'" in res.output and "imaging" in res.output


def test_a_redis_need_is_a_sentinel_url_and_an_acl_user_by_key_name(
    imaging_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load(imaging_site)
    entry = _imaging().model_copy(
        update={
            "needs": _imaging().needs.model_copy(
                update={"redis": bundle.RedisNeed(user="imaging", prefix="imaging:")}
            )
        }
    )
    keys = bundle.secret_keys(entry)
    secrets = ensure_named(imaging_site, keys.values())
    known = bundle.values(loaded.site, loaded.plan, entry, secrets, phase._ports())
    domain = loaded.site.hospital.site_domain
    assert known["needs.redis.sentinels"] == f"redis.{domain}:26379"
    assert known["needs.redis.master"] == f"{loaded.plan.site}-redis"
    password = secrets[keys["needs.redis.password"]]
    assert known["needs.redis.url"].startswith(f"redis+sentinel://imaging:{password}@redis.")
    assert known["needs.redis.url"].endswith(f":26379/{loaded.plan.site}-redis/0")
    assert ("needs.redis.url", True) in {
        (r.text, r.secret) for r in bundle.references("${needs.redis.url} ${needs.redis.master}")[0]
    }

    # the site picks this entry (a bundle folder with it would, too)
    loaded_entry = bundle.LoadedEntry(entry, "services/imaging.yaml", ("imaging",))
    monkeypatch.setattr(phase, "picked", lambda site, site_dir: [loaded_entry])
    extra = phase.extravars(loaded.site, loaded.plan, loaded.site_dir)
    (gone,) = phase.purge_list(loaded.site, loaded.plan, imaging_site)
    (need,) = extra["bundle_needs_entries"]
    assert need["redis"] == {
        "user": "imaging",
        "prefix": "imaging:",
        "password_var": "bundle_imaging_redis_password",
    }
    assert password not in json.dumps(extra)
    assert any("every Redis key under imaging:" in d for d in gone["deletes"])


def test_a_dry_run_says_how_to_make_every_missing_input(imaging_site: Path) -> None:
    from typer.testing import CliRunner

    from hzcloud.app import app

    res = CliRunner().invoke(app, ["up", str(imaging_site), "--dry-run"])
    assert res.exit_code == 0, res.output
    # the artifacts' fix and the bundle images' own, not only the first one
    assert "scripts/build-artifacts" in res.output
    assert "scripts/build-bundle-images" in res.output
