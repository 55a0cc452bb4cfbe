"""The site-to-tenant link's facts, written once: addresses, interface names, key files.

The cloud phase (gateway side) and the lab's emulated tenant (endpoint side) both derive the
tunnel from the site's tenant entry with these functions, so the two ends always agree.

Files in <site>/cloud/ (mode 0700; keep a copy with secrets.yaml and pki/):
- `<tenant>-wg.key`: the site's WireGuard private key for that tenant (0600, made once, never
  printed, never replaced: the tenant's endpoint knows its public half);
- `<tenant>-endpoint.pub`: the tenant endpoint's WireGuard public key, from the cloud (the lab
  writes its emulated tenant's);
- `<tenant>-ca.crt` (optional): the CA of the tenant API's certificate when not a public one;
- `<tenant>-repo.key`: the cipher pass of the tenant repository (0600, made once): pgBackRest's,
  and rclone crypt's for the etcd snapshots and bucket copies. Without it the encrypted backups
  cannot be read;
- `rgw-dr.key`: the keys of the site's RGW user that reads the buckets copied into the tenant
  (0600, made once; `ACCESS:SECRET`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets as _random
from dataclasses import dataclass
from pathlib import Path

from hzcloud.errors import HzError

WG_PORT = 51820
CLOUD_DIR = "cloud"


@dataclass(frozen=True)
class TunnelAddresses:
    tenant: str  # the tenant end's address in its subnet (its router for the site)
    gateway: str  # the site gateway's tunnel address (the tenant sees the site as this one)
    prefix: int


def tunnel_addresses(subnet: str, gateway_index: int = 0) -> TunnelAddresses:
    """The tenant's end is the subnet's first host; gateway n is the (2+n)th."""
    net = ipaddress.ip_network(subnet)
    return TunnelAddresses(
        str(net.network_address + 1), str(net.network_address + 2 + gateway_index), net.prefixlen
    )


def site_interface(tenant: str) -> str:
    """The gateway's WireGuard interface (one per tenant; Linux names hold 15 characters)."""
    return f"wg-{tenant}"[:15]


def endpoint_interface(code: str, tenant: str) -> str:
    """The emulated tenant's interface: unique on the host, since every network namespace
    shares /var/run/wireguard/<name>.sock."""
    digest = hashlib.sha256(f"{code}/{tenant}".encode()).hexdigest()[:6]
    return f"hzw{code[:4]}{digest}"[:15]


def cloud_dir(site_dir: Path) -> Path:
    return site_dir / CLOUD_DIR


def site_key_path(site_dir: Path, tenant: str) -> Path:
    return cloud_dir(site_dir) / f"{tenant}-wg.key"


def endpoint_pub_path(site_dir: Path, tenant: str) -> Path:
    return cloud_dir(site_dir) / f"{tenant}-endpoint.pub"


def ca_path(site_dir: Path, tenant: str) -> Path:
    return cloud_dir(site_dir) / f"{tenant}-ca.crt"


def repo_key_path(site_dir: Path, tenant: str) -> Path:
    return cloud_dir(site_dir) / f"{tenant}-repo.key"


def rgw_reader_key_path(site_dir: Path) -> Path:
    return cloud_dir(site_dir) / "rgw-dr.key"


def new_private_key() -> str:
    """A WireGuard (X25519) private key, base64 as `wg genkey` prints it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    raw = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def public_key(private: str) -> str:
    """The public half of a base64 WireGuard private key (`wg pubkey`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _ensure_secret_file(path: Path, make: str) -> str:
    """The file's text; made with `make` (0600, O_EXCL) when absent, never replaced."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(make + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    mode = path.stat().st_mode & 0o077
    if mode or path.is_symlink():
        raise HzError(
            f"{path} can be read by others or is a link",
            "it holds a key of the site's link to its tenant",
            f"chmod 600 {path} (and make it a plain file)",
        )
    text = path.read_text().strip()
    if not text:
        raise HzError(
            f"{path} is empty",
            "a key file of the tenant link was damaged",
            f"restore your copy of {path.parent}",
        )
    return text


def ensure_site_key(site_dir: Path, tenant: str) -> str:
    """The site's WireGuard public key for the tenant (its private key made once, 0600)."""
    return public_key(_ensure_secret_file(site_key_path(site_dir, tenant), new_private_key()))


def ensure_repo_key(site_dir: Path, tenant: str) -> str:
    """The tenant repository's cipher pass (made once, 0600); never printed."""
    return _ensure_secret_file(repo_key_path(site_dir, tenant), _random.token_urlsafe(32))


def ensure_rgw_reader_keys(site_dir: Path) -> tuple[str, str]:
    """The keys of the RGW user that reads the buckets to copy (made once, 0600)."""
    import string

    upper = string.ascii_uppercase + string.digits
    made = "".join(_random.choice(upper) for _ in range(20))
    made += ":" + "".join(_random.choice(string.ascii_letters + string.digits) for _ in range(40))
    access, _, secret = _ensure_secret_file(rgw_reader_key_path(site_dir), made).partition(":")
    return access, secret


# rclone's published key for "obscured" values in its configuration (obfuscation, not secrecy:
# the file holding them is 0600)
_RCLONE_OBSCURE_KEY = bytes.fromhex(
    "9c935b48730a554d6bfd7c63c886a92bd390198eb8128afbf4de162b8b95f638"
)


def rclone_obscure(text: str) -> str:
    """`rclone obscure TEXT`, with an IV derived from the text: the same configuration file on
    every run (rclone reads any IV), so a converged site changes nothing."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = hashlib.sha256(b"hzcloud rclone obscure\0" + text.encode()).digest()[:16]
    enc = Cipher(algorithms.AES(_RCLONE_OBSCURE_KEY), modes.CTR(iv)).encryptor()
    raw = iv + enc.update(text.encode()) + enc.finalize()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
