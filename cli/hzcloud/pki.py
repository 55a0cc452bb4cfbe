"""The site's certificate authorities: made once, here only, and never replaced implicitly.

Every role and stack reads `<site>/pki/<ca>.crt` and `.key` and signs its own certificates with
them; none makes or rewrites a CA. A CA that is there but damaged (a key that does not match its
certificate, a certificate that is not a CA, an expired one, half a pair) stops the run with the
file named: replacing it would re-sign every certificate of the site and lock clients out.
Rotating a CA is an explicit operation, not a side effect of `up`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from hzcloud.errors import HzError

PKI_DIR = "pki"
# ECDSA P-256: accepted by every client hzcloud serves (libpq, Go's crypto/tls, Java, Python).
CA_DAYS = 3650


@dataclass(frozen=True)
class Authority:
    """One CA of the site: its file stem and the subject it is made with."""

    name: str  # <name>.crt / <name>.key in <site>/pki
    purpose: str  # in the subject: "<hospital> <purpose>"


# The site CA signs PostgreSQL's, Kubernetes' and the way in's certificates; Kubernetes' etcd
# gets a CA of its own so that a client certificate for one can never open the other.
SITE_CA = Authority("ca", "site CA")
ETCD_CA = Authority("etcd-ca", "Kubernetes etcd CA")
AUTHORITIES = (SITE_CA, ETCD_CA)


def pki_dir(site_dir: Path) -> Path:
    return site_dir / PKI_DIR


def ca_cert_path(site_dir: Path, ca: Authority = SITE_CA) -> Path:
    return pki_dir(site_dir) / f"{ca.name}.crt"


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate (DER), as `openssl x509 -fingerprint -sha256` prints it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def ensure_pki(site_dir: Path, hospital: str) -> list[Path]:
    """Make each CA that does not exist yet; check the others. Returns the files it wrote."""
    folder = pki_dir(site_dir)
    written: list[Path] = []
    for ca in AUTHORITIES:
        crt, key = folder / f"{ca.name}.crt", folder / f"{ca.name}.key"
        if crt.exists() or key.exists():
            check_authority(crt, key)
            continue
        folder.mkdir(mode=0o700, exist_ok=True)
        written += _make_authority(crt, key, f"{hospital} {ca.purpose}")
    return written


def _damaged(path: Path, cause: str) -> HzError:
    return HzError(
        f"the site CA file {path} is not usable",
        cause,
        f"restore {path.parent} from your copy of the site folder; hzcloud never replaces a CA "
        "on its own (a new CA would re-sign every certificate and lock every client out)",
    )


def check_authority(crt: Path, key: Path) -> None:
    """The pair is there, the key is the certificate's, and the certificate is a valid CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    for path in (crt, key):
        if not path.is_file():
            other = key if path == crt else crt
            raise _damaged(path, f"it is missing while {other.name} is there")
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
    except ValueError:
        raise _damaged(crt, "it is not a PEM certificate") from None
    try:
        private = load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise _damaged(key, "it is not an unencrypted PEM private key") from None
    fmt = PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(Encoding.PEM, fmt) != cert.public_key().public_bytes(
        Encoding.PEM, fmt
    ):
        raise _damaged(key, f"it is not the key of {crt.name}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise _damaged(crt, "it is not a certificate authority (no CA:TRUE)")
    if cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        raise _damaged(crt, f"it expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if key.stat().st_mode & 0o077:
        os.chmod(key, 0o600)  # ours to keep private; the content is what must never change


def _make_authority(crt: Path, key: Path, common_name: str) -> list[Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(private, hashes.SHA256())
    )
    key_bytes = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new(key, key_bytes, 0o600)
    _write_new(crt, cert.public_bytes(Encoding.PEM), 0o644)
    return [key, crt]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet (O_EXCL: two runs never both make a CA)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
