"""The cloud phase as `up` sees it: tenants in site.yaml, their keys in secrets.yaml checked
before any host is touched, and only the s3-compatible tenant side run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hzcloud import engine
from hzcloud.errors import HzError, SiteError, UsageError
from hzcloud.model import load_site
from hzcloud.phases import cloud
from hzcloud.plan import plan_site
from hzcloud.secrets import ensure_secrets

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "inventories" / "sample-hospital" / "site.yaml"


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "stgeorge"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "site.yaml")
    return folder


def _with_tenant(site_dir: Path, **tenant: str) -> None:
    data = yaml.safe_load((site_dir / "site.yaml").read_text())
    data["cloud"]["tenants"][0].update(tenant)
    (site_dir / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _add_secrets(site_dir: Path, **keys: str) -> None:
    path = site_dir / "secrets.yaml"
    values = yaml.safe_load(path.read_text())
    values.update(keys)
    path.write_text(yaml.safe_dump(values))


def test_the_sample_tenant_names_its_keys_and_defaults_its_bucket(site_dir: Path) -> None:
    site = load_site(site_dir)
    (t,) = site.cloud.tenants
    assert t.provider == "s3-compatible" and str(t.api).startswith("https://")
    assert t.secret_keys == ("tenant_dr_access_key", "tenant_dr_secret_key")
    assert t.bucket_name(site.hospital.code) == "hz-stgeorge-backup"
    _with_tenant(site_dir, bucket="st-george-dr", credentials="dr_keys")
    t = load_site(site_dir).cloud.tenants[0]
    assert t.bucket_name("stgeorge") == "st-george-dr"
    assert t.secret_keys == ("dr_keys_access_key", "dr_keys_secret_key")


def test_without_credentials_the_keys_are_named_after_the_tenant(site_dir: Path) -> None:
    data = yaml.safe_load((site_dir / "site.yaml").read_text())
    del data["cloud"]["tenants"][0]["credentials"]
    data["cloud"]["tenants"][0]["name"] = "off-site"
    (site_dir / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    t = load_site(site_dir).cloud.tenants[0]
    assert t.secret_keys == ("tenant_off_site_access_key", "tenant_off_site_secret_key")


def test_a_pasted_secret_is_never_echoed(site_dir: Path) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    for value in (secret, {"access_key": "AKIAEXAMPLE", "secret_key": secret}):
        data = yaml.safe_load((site_dir / "site.yaml").read_text())
        data["cloud"]["tenants"][0]["credentials"] = value
        (site_dir / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.raises(SiteError) as err:
            load_site(site_dir)
        text = " ".join(str(p) for p in err.value.problems)
        assert "credentials" in text and secret not in text and "AKIAEXAMPLE" not in text


def test_plain_http_is_allowed_only_through_the_link(site_dir: Path) -> None:
    _with_tenant(site_dir, api="http://172.31.0.10:9000")  # inside the tenant subnet
    assert load_site(site_dir).cloud.tenants[0].api is not None
    _with_tenant(site_dir, api="http://s3.example.net")
    with pytest.raises(SiteError) as err:
        load_site(site_dir)
    assert "is plain HTTP" in str(err.value.problems[0])


def _loaded(site_dir: Path) -> engine.Loaded:
    return engine.load(site_dir)


def test_missing_tenant_keys_stop_up_before_anything(site_dir: Path) -> None:
    """No secrets.yaml yet, then one without the tenant's keys: up refuses, names the key,
    writes nothing and runs nothing."""
    loaded = _loaded(site_dir)
    chosen = [p for p in loaded.plan.phases if p.name == "cloud"]
    missing = engine.missing_needs(loaded, chosen)
    keys = [n.key for n in missing if n.key]
    assert keys == ["tenant_dr_access_key", "tenant_dr_secret_key"]
    prepared: list[str] = []
    with pytest.raises(UsageError) as err:
        engine.up(loaded, None, lambda _e: None, prepare=lambda _l: prepared.append("x"))
    assert f"tenant_dr_access_key in {site_dir / 'secrets.yaml'}" in err.value.what
    assert "operator" in err.value.cause and "nothing was touched" in err.value.cause
    assert prepared == [] and not (site_dir / "state").exists()

    ensure_secrets(site_dir)  # what `hzcloud render` makes: the generated keys only
    missing = engine.missing_needs(loaded, chosen)
    (first,) = [n for n in missing if n.key == "tenant_dr_access_key"]
    assert "tenant_dr_access_key: ..." in first.fix and "secrets.yaml" in first.fix
    _add_secrets(site_dir, tenant_dr_access_key="AKIAEXAMPLE", tenant_dr_secret_key="s3cr3t")
    assert [n.key for n in engine.missing_needs(loaded, chosen) if n.key] == []


def test_the_phase_runs_the_s3_program_with_the_operators_keys(site_dir: Path) -> None:
    ensure_secrets(site_dir)
    _add_secrets(site_dir, tenant_dr_access_key="AKIAEXAMPLE", tenant_dr_secret_key="s3cr3t")
    site = load_site(site_dir)
    assert cloud.PHASE.unavailable == "" and cloud.PHASE.program is not None
    assert callable(cloud.PHASE.program(site, plan_site(site), site_dir))


@pytest.mark.parametrize("provider", ["aws", "alicloud", "azure"])
def test_other_providers_are_not_available_yet(site_dir: Path, provider: str) -> None:
    _with_tenant(site_dir, provider=provider, region="westeurope")
    ensure_secrets(site_dir)
    site = load_site(site_dir)
    assert cloud.PHASE.program is not None
    with pytest.raises(HzError) as err:
        cloud.PHASE.program(site, plan_site(site), site_dir)
    assert err.value.what == f"not available yet: tenant dr ({provider})"
