"""The site CAs: made once, read by everyone, never replaced behind the operator's back."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from hzcloud import pki
from hzcloud.errors import HzError


def test_made_once_then_left_alone(tmp_path: Path) -> None:
    written = pki.ensure_pki(tmp_path, "St George's")
    assert sorted(p.name for p in written) == ["ca.crt", "ca.key", "etcd-ca.crt", "etcd-ca.key"]
    before = pki.fingerprint(pki.ca_cert_path(tmp_path))
    mtimes = {p: p.stat().st_mtime_ns for p in written}
    assert pki.ensure_pki(tmp_path, "St George's") == []
    assert pki.fingerprint(pki.ca_cert_path(tmp_path)) == before
    assert {p: p.stat().st_mtime_ns for p in written} == mtimes
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700


def test_the_ca_is_a_ca(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, "St George's")
    cert = x509.load_pem_x509_certificate(pki.ca_cert_path(tmp_path).read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject.rfc4514_string() == "CN=St George's site CA"


def test_a_key_of_another_ca_is_refused_not_replaced(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, "A")
    other = tmp_path / "other"
    other.mkdir()
    pki.ensure_pki(other, "B")
    key = tmp_path / "pki" / "ca.key"
    key.write_bytes((other / "pki" / "ca.key").read_bytes())
    with pytest.raises(HzError) as err:
        pki.ensure_pki(tmp_path, "A")
    assert str(key) in err.value.what
    assert "not the key of ca.crt" in err.value.cause
    assert "never replaces a CA" in err.value.fix
    assert key.read_bytes() == (other / "pki" / "ca.key").read_bytes()  # left as found


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        ("missing-crt", "it is missing while ca.key is there"),
        ("garbage-crt", "it is not a PEM certificate"),
        ("garbage-key", "it is not an unencrypted PEM private key"),
    ],
)
def test_half_or_damaged_pairs_stop_the_run(tmp_path: Path, damage: str, cause: str) -> None:
    pki.ensure_pki(tmp_path, "A")
    crt, key = tmp_path / "pki" / "ca.crt", tmp_path / "pki" / "ca.key"
    if damage == "missing-crt":
        crt.unlink()
    elif damage == "garbage-crt":
        crt.write_text("not a certificate\n")
    else:
        key.write_text("not a key\n")
    with pytest.raises(HzError) as err:
        pki.ensure_pki(tmp_path, "A")
    assert err.value.cause == cause
