"""The clinical service bundle: the default bundle, broken bundles, site.yaml's picks, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from hzcloud import bundle
from hzcloud.errors import SiteError
from hzcloud.model import BundleService, load_site

if TYPE_CHECKING:
    from conftest import Hz

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "bundles" / "default"
SAMPLE_SITE = ROOT / "inventories" / "sample-hospital" / "site.yaml"
BAD = Path(__file__).parent / "bad_bundles"
EXPECTED: dict[str, list[str]] = yaml.safe_load((BAD / "expected.yaml").read_text())
CASES = sorted(p.name for p in BAD.iterdir() if p.is_dir() and not p.name.startswith("_"))


def bad_bundle(tmp_path: Path, case: str) -> Path:
    """The small valid bundle of _base with the case's files laid over it."""
    folder = tmp_path / case
    shutil.copytree(BAD / "_base", folder)
    shutil.copytree(BAD / case, folder, dirs_exist_ok=True)
    return folder


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(SiteError) as info:
        bundle.load_bundle(folder)
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def stderr_for(problems: list[str]) -> str:
    n = len(problems)
    lines = [f"error: {n} problem{'s' if n != 1 else ''} in the site files; nothing was changed"]
    for text in problems:
        head, fix = text.rsplit(" (fix: ", 1)
        lines += [f"  • {head}", f"      fix: {fix[:-1]}"]
    return "\n".join(lines) + "\n"


# --- the default bundle ---------------------------------------------------------------------


def test_the_default_bundle_validates() -> None:
    b = bundle.load_bundle(DEFAULT)
    assert (b.name, b.version) == ("default", "1.0.0")
    assert sorted(b.entries) == ["fhir", "imaging"]
    assert b.offers == {
        "patient-index": "fhir",
        "codes": "fhir",
        "records": "fhir",
        "orders": "fhir",
        "imaging": "imaging",
    }


def test_the_site_model_enum_is_the_default_bundles_offers() -> None:
    # fleet.yaml and the planner's tests still use the enum: it must not drift from the bundle
    assert sorted(str(s) for s in BundleService) == sorted(bundle.load_bundle(DEFAULT).offers)


def test_the_shipped_bundle_is_found_from_the_package() -> None:
    assert bundle.default_bundle_dir().resolve() == DEFAULT.resolve()


def test_fhir_entry_is_sized_for_the_jpa_server() -> None:
    fhir = bundle.load_bundle(DEFAULT).entries["fhir"].entry
    assert fhir.images[0].ref == "hzcloud.local/hapi-fhir-jpa:8.8.0-1"
    assert fhir.needs.postgres is not None and fhir.needs.s3 is None
    # ~1.2-1.3 GB RSS measured: the heap and the limit leave room for it
    assert "-Xmx1536m" in fhir.env["JAVA_TOOL_OPTIONS"]
    assert fhir.resources.limits.memory == "2560Mi"
    startup = fhir.probes.startup
    assert startup is not None and startup.period * startup.failures >= 2 * 309
    # a PostgreSQL failover must not restart the JVM: liveness does not touch the database
    assert fhir.probes.liveness.tcp is not None


def test_imaging_entry_keeps_files_in_s3_and_dicom_on_the_way_in() -> None:
    imaging = bundle.load_bundle(DEFAULT).entries["imaging"].entry
    assert imaging.images[0].ref == "hzcloud.local/orthanc:1.10.1-1"
    assert imaging.images[0].archive == "images/orthanc-1.10.1-1.tar"
    assert imaging.needs.s3 is not None and imaging.needs.postgres is not None
    assert imaging.needs.way_in is not None
    assert [(t.name, t.port) for t in imaging.needs.way_in.tcp] == [("dicom", 4242)]
    conf = json.loads(
        next(c.content for c in imaging.config if c.path.endswith(".json"))
        .replace("$${", "${")
        .replace("${needs.postgres.port}", "5432")
    )
    assert conf["AuthenticationEnabled"] is True
    assert (
        conf["PostgreSQL"]["EnableIndex"] is True and conf["PostgreSQL"]["EnableStorage"] is False
    )
    assert conf["PythonScript"] == "/etc/orthanc/s3-storage.py"
    script = next(c.content for c in imaging.config if c.path.endswith(".py"))
    compile(script, "s3-storage.py", "exec")  # the storage area is real Python
    assert "orthanc.RegisterStorageArea(create, read, remove)" in script


# --- references ------------------------------------------------------------------------------


def test_references_are_parsed_and_secret_ones_marked() -> None:
    refs, bad = bundle.references(
        "postgresql://${needs.postgres.user}@x $${KEEP} ${needs.postgres.password} ${site.ca_file}"
    )
    assert bad == []
    assert [(r.text, r.secret) for r in refs] == [
        ("needs.postgres.user", False),
        ("needs.postgres.password", True),
        ("site.ca_file", False),
    ]


# --- broken bundles ------------------------------------------------------------------------


def test_the_corpus_is_fully_described() -> None:
    assert len(CASES) >= 12
    assert sorted(EXPECTED) == CASES
    assert all(EXPECTED[name] for name in CASES)


def test_the_base_of_the_corpus_is_valid(tmp_path: Path) -> None:
    shutil.copytree(BAD / "_base", tmp_path / "tiny")
    assert sorted(bundle.load_bundle(tmp_path / "tiny").entries) == ["echo", "store"]


@pytest.mark.parametrize("case", CASES)
def test_load_bundle_reports_exactly_the_expected_problems(tmp_path: Path, case: str) -> None:
    assert problems_of(bad_bundle(tmp_path, case)) == EXPECTED[case]


@pytest.mark.parametrize("case", CASES)
def test_bundle_validate_prints_every_problem_and_exits_2(
    tmp_path: Path, hz: Hz, case: str
) -> None:
    result = hz("bundle", "validate", str(bad_bundle(tmp_path, case)))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == stderr_for(EXPECTED[case])
    assert "Traceback" not in result.output


def test_a_folder_without_bundle_yaml(tmp_path: Path, hz: Hz) -> None:
    result = hz("bundle", "validate", str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path} no bundle.yaml in this folder" in result.stderr


def test_validate_default_bundle(hz: Hz) -> None:
    result = hz("bundle", "validate", str(DEFAULT))
    assert result.exit_code == 0, result.output
    assert "ok — bundle default 1.0.0, 2 entries serving 5 services" in result.stdout


# --- site.yaml picks ------------------------------------------------------------------------


def site_with(tmp_path: Path, bundle_yaml: str, services: dict[str, object] | None = None) -> Path:
    data = yaml.safe_load(SAMPLE_SITE.read_text())
    data["bundle"] = yaml.safe_load(bundle_yaml)
    if services is not None:
        data["services"] = services
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def test_unknown_service_lists_the_default_bundles_names(tmp_path: Path, hz: Hz) -> None:
    folder = site_with(tmp_path, "{services: [imaging, pacs]}")
    result = hz("validate", str(folder))
    assert result.exit_code == 2
    assert "bundle.services[1]: unknown service 'pacs': bundle default 1.0.0 does not offer it" in (
        result.stderr
    )
    assert "fix: use one of: codes, imaging, orders, patient-index, records" in result.stderr


def test_unknown_service_is_checked_against_the_sites_own_bundle(tmp_path: Path) -> None:
    shutil.copytree(BAD / "_base", tmp_path / "tiny")
    folder = site_with(tmp_path, "{services: [echo, imaging], folder: ../tiny}")
    with pytest.raises(SiteError) as info:
        load_site(folder)
    line = (folder / "site.yaml").read_text().splitlines().index("  - imaging") + 1
    assert [str(p) for p in info.value.problems] == [
        f"site.yaml:{line} bundle.services[1]: unknown service 'imaging': bundle tiny 0.1.0 does "
        "not offer it (fix: use one of: echo, store)"
    ]


def test_needs_are_checked_against_the_sites_services(tmp_path: Path) -> None:
    shutil.copytree(BAD / "_base", tmp_path / "tiny")
    folder = site_with(
        tmp_path,
        "{services: [echo, store], folder: ../tiny}",
        {"ceph": {"enabled": False}, "redis": {"enabled": False}},
    )
    with pytest.raises(SiteError) as info:
        load_site(folder)
    whats = [p.what for p in info.value.problems]
    assert "store needs Redis, which is disabled" in whats
    assert "store needs S3 (Ceph RGW), which is disabled" in whats
    assert not any("echo needs" in w for w in whats)


def test_a_site_without_services_reads_no_bundle(tmp_path: Path) -> None:
    folder = site_with(tmp_path, "{services: [], folder: ../does-not-exist}")
    assert load_site(folder).bundle.services == []


def test_a_missing_bundle_folder_is_named(tmp_path: Path) -> None:
    folder = site_with(tmp_path, "{services: [imaging], folder: ../nowhere}")
    with pytest.raises(SiteError) as info:
        load_site(folder)
    assert [p.what for p in info.value.problems] == ["bundle folder not found"]


def test_the_sample_site_picks_all_five(tmp_path: Path) -> None:
    site = load_site(SAMPLE_SITE)
    assert list(site.bundle.services) == ["patient-index", "codes", "records", "orders", "imaging"]


# --- CLI: list and show ---------------------------------------------------------------------


def test_list_json_contract(hz: Hz) -> None:
    result = hz("bundle", "list", str(SAMPLE_SITE.parent), "--output", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["bundle"]["name"] == "default" and data["bundle"]["version"] == "1.0.0"
    assert data["site"] == str(SAMPLE_SITE.parent)
    assert data["picked"] == ["patient-index", "codes", "records", "orders", "imaging"]
    assert data["entries"] == [
        {
            "name": "fhir",
            "version": "8.8.0-1",
            "offers": ["patient-index", "codes", "records", "orders"],
            "picked": ["patient-index", "codes", "records", "orders"],
            "images": ["hzcloud.local/hapi-fhir-jpa:8.8.0-1"],
        },
        {
            "name": "imaging",
            "version": "1.10.1-1",
            "offers": ["imaging"],
            "picked": ["imaging"],
            "images": ["hzcloud.local/orthanc:1.10.1-1"],
        },
    ]


def test_list_without_a_site_picks_nothing(hz: Hz) -> None:
    result = hz("bundle", "list", "-o", "json")
    data = json.loads(result.stdout)
    assert data["site"] is None and data["picked"] == []
    assert [e["picked"] for e in data["entries"]] == [[], []]


def test_list_text(hz: Hz) -> None:
    result = hz("bundle", "list")
    assert result.exit_code == 0
    assert "bundle default 1.0.0" in result.stdout
    assert "imaging" in result.stdout and "fhir" in result.stdout


def test_list_of_a_bad_site_exits_2(tmp_path: Path, hz: Hz) -> None:
    result = hz("bundle", "list", str(site_with(tmp_path, "{services: [xray]}")))
    assert result.exit_code == 2
    assert "unknown service 'xray'" in result.stderr


def test_show_json_contract(hz: Hz) -> None:
    result = hz("bundle", "show", "imaging", "--output", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert sorted(data) == [
        "checks",
        "config",
        "depends_on",
        "description",
        "endpoints",
        "env",
        "file",
        "images",
        "load",
        "name",
        "needs",
        "offers",
        "probes",
        "replicas",
        "resources",
        "version",
    ]
    assert data["images"] == [
        {
            "name": "orthanc",
            "ref": "hzcloud.local/orthanc:1.10.1-1",
            "archive": "images/orthanc-1.10.1-1.tar",
        }
    ]
    assert data["needs"]["postgres"] == {"database": "orthanc", "role": "orthanc"}
    assert data["needs"]["s3"] == {"bucket": "orthanc-dicom"}
    assert data["endpoints"] == [
        {"name": "https", "scheme": "https", "host": "imaging", "port": 443, "path": "/"},
        {
            "name": "dicomweb",
            "scheme": "https",
            "host": "imaging",
            "port": 443,
            "path": "/dicom-web/",
        },
        {"name": "dicom", "scheme": "tcp", "host": "imaging", "port": 4242, "path": None},
    ]
    assert data["checks"] == [
        {"name": "auth-required", "http": {"path": "/system", "status": 401}},
        {"name": "dicomweb-auth-required", "http": {"path": "/dicom-web/studies", "status": 401}},
        {"name": "dicom", "tcp": {"port": "dicom"}},
    ]
    assert data["env"]["ORTHANC_PG_PASSWORD"] == {
        "value": "${needs.postgres.password}",
        "secret": True,
    }
    assert data["env"]["S3_BUCKET"]["secret"] is False


def test_show_by_a_service_name_gives_its_entry(hz: Hz) -> None:
    result = hz("bundle", "show", "codes", "-o", "json")
    assert json.loads(result.stdout)["name"] == "fhir"


def test_show_text_marks_secrets(hz: Hz) -> None:
    result = hz("bundle", "show", "imaging")
    assert result.exit_code == 0
    assert "env ORTHANC_PG_PASSWORD=${needs.postgres.password}  [secret]" in result.stdout
    assert "endpoint dicom: tcp://imaging.<site domain>:4242" in result.stdout


def test_show_unknown_name_exits_2(hz: Hz) -> None:
    result = hz("bundle", "show", "billing")
    assert result.exit_code == 2
    assert "bundle default has no entry or service 'billing'" in result.stderr
    assert "codes, imaging, orders, patient-index, records" in result.stderr


def test_every_bundle_verb_is_offered(hz: Hz) -> None:
    result = hz("bundle", "--help")
    assert result.exit_code == 0
    for offered in ("list", "show", "validate", "install", "upgrade", "status", "verify", "remove"):
        assert offered in result.stdout
    remove = hz("bundle", "remove", "--help")
    assert "--purge" in remove.stdout and "--yes" in remove.stdout


def test_importing_the_cli_does_not_read_bundles() -> None:
    code = "import sys, hzcloud.app; print('hzcloud.bundle' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"
