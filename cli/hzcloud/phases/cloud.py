"""cloud: the public-cloud tenant side (Pulumi), then the link and the backups (Ansible).

First the stack, for `s3-compatible` tenants: the backup bucket (versioned, private) and a
backup user whose key reaches that bucket only (stacks/cloud_s3.py, Pulumi dynamic providers
with boto3), made with the operator's key from secrets.yaml. Then playbooks/cloud.yml with the
stack's outputs: the WireGuard link from the gateway (roles/cloud_link; routes for the tenant
subnet only, nftables letting through only the backups' HTTPS to the tenant's API) and the
backups through it (roles/pg_backup: pgBackRest with Patroni, repo2 encrypted in the bucket;
roles/dr_layers: etcd snapshots and Ceph bucket copies by rclone, encrypted by rclone crypt).

The aws / alicloud programs (stacks/cloud_aws.py, stacks/cloud_alicloud.py) are tested with
mocks only (their provider plugins cannot be built here): a site with such a tenant gets a
"not available yet" failure for this phase, before anything is made. A tenant that cannot be
reached fails this phase alone: no other phase depends on it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzcloud import cloudlink
from hzcloud.errors import HzError
from hzcloud.phases import Need, Phase, artifact_needs

if TYPE_CHECKING:
    from hzcloud.model import Site, Tenant
    from hzcloud.plan import Plan

# the engine, its kubernetes plugin (the Pulumi executor checks for both) and the script that
# serves dynamic providers from the Python of hzcloud
PULUMI_BINARIES = (
    "bin/pulumi",
    "bin/pulumi-resource-kubernetes",
    "bin/pulumi-resource-pulumi-python",
)
RUNS = ("s3-compatible",)


def backup_user(site: Site) -> str:
    return f"hz-{site.hospital.code}-backup"


def _needs(site: Site, site_dir: Path) -> list[Need]:
    out = artifact_needs(site, site_dir, PULUMI_BINARIES, "Pulumi")
    if site.services.kubernetes.enabled:  # restores Kubernetes' etcd snapshots (3.5+)
        out += artifact_needs(site, site_dir, ("bin/etcdutl",), "etcd snapshots")
    for t in site.cloud.tenants:
        pub = cloudlink.endpoint_pub_path(site_dir, t.name)
        out.append(
            Need(
                f"tenant {t.name}'s WireGuard public key",
                pub,
                f"write the public key of the tenant's VPN endpoint {t.endpoint} (from its "
                f"console) into {pub}; give that endpoint this site's public key (`hzcloud "
                f"up` makes it once in {cloudlink.site_key_path(site_dir, t.name)})",
            )
        )
        for key in t.secret_keys:
            out.append(
                Need(
                    f"tenant {t.name}'s credentials: {key}",
                    site_dir / "secrets.yaml",
                    f"add `{key}: ...` (the {t.provider} tenant's "
                    f"{'access key id' if key.endswith('_access_key') else 'secret key'}) to "
                    f"{site_dir / 'secrets.yaml'} (mode 0600; `hzcloud render` makes the file "
                    "first), or name other keys with credentials: in site.yaml",
                    key=key,
                )
            )
    return out


def _refused(tenants: list[Tenant]) -> str:
    return ", ".join(f"{t.name} ({t.provider})" for t in tenants if t.provider not in RUNS)


def _program(site: Site, plan: Plan, site_dir: Path) -> Callable[[], None]:
    from hzcloud.executors.pulumi import load_stack_module
    from hzcloud.secrets import read_secrets

    refused = _refused(site.cloud.tenants)
    if refused:
        raise HzError(
            f"not available yet: tenant {refused}",
            "this build makes the tenant side of s3-compatible tenants only; the aws and "
            "alicloud programs are tested with mocks, their plugins are not in the artifacts",
            "use provider: s3-compatible with the service's S3 api: URL (AWS S3 and Alibaba "
            "OSS speak it), or leave the tenant out for now",
        )
    s3 = load_stack_module("cloud_s3")
    secrets = read_secrets(site_dir)
    tenants = {
        t.name: s3.S3TenantArgs(
            endpoint=str(t.api),
            region=t.region,
            bucket=t.bucket_name(site.hospital.code),
            access_key=secrets[t.secret_keys[0]],
            secret_key=secrets[t.secret_keys[1]],
            user=backup_user(site),
            ca_bundle=_ca_bundle(site_dir, t.name),
        )
        for t in site.cloud.tenants
    }

    def program() -> None:
        s3.program(tenants)

    return program


def _ca_bundle(site_dir: Path, tenant: str) -> str:
    ca = cloudlink.ca_path(site_dir, tenant)
    return str(ca) if ca.exists() else ""


def _api_address(host: str) -> str:
    """The tenant API's address as the control node resolves it (the nodes get the same)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, 443, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise HzError(
            f"the tenant API's name {host} does not resolve here",
            str(exc),
            "make it resolvable on this machine (DNS or /etc/hosts), or write its address "
            "in the api: URL",
        ) from exc
    return str(infos[0][4][0])


def link_vars(site: Site, plan: Plan, site_dir: Path, made: dict[str, Any]) -> dict[str, Any]:
    """What roles cloud_link, pg_backup and dr_layers need, from the site, its link keys and the
    stack."""
    import ipaddress
    from urllib.parse import urlsplit

    tenants = []
    for t in site.cloud.tenants:
        out = made.get(t.name) or {}
        api = urlsplit(str(t.api))
        host = api.hostname or ""
        address = _api_address(host)
        tunnel = cloudlink.tunnel_addresses(str(t.subnet))
        site_key = cloudlink.site_key_path(site_dir, t.name)
        cloudlink.ensure_site_key(site_dir, t.name)
        ca = cloudlink.ca_path(site_dir, t.name)
        tenants.append(
            {
                "name": t.name,
                "interface": cloudlink.site_interface(t.name),
                "private_key": site_key.read_text().strip(),
                "endpoint": str(t.endpoint),
                "port": cloudlink.WG_PORT,
                "endpoint_public_key": cloudlink.endpoint_pub_path(site_dir, t.name)
                .read_text()
                .strip(),
                "subnet": str(t.subnet),
                "address": tunnel.gateway,
                "api_url": str(t.api).rstrip("/"),
                "api_host": host,
                "api_address": address,
                "api_port": api.port or 443,
                # reached through the link (a private endpoint in the tenant's subnet)?
                "api_in_subnet": ipaddress.ip_address(address) in t.subnet,
                "ca_cert": ca.read_text() if ca.exists() else "",
                "region": t.region,
                "bucket": str(out.get("bucket") or t.bucket_name(site.hospital.code)),
                "access_key": str(out.get("access_key_id") or ""),
                "secret_key": str(out.get("secret_access_key") or ""),
                "repo_cipher": cloudlink.ensure_repo_key(site_dir, t.name),
            }
        )
    return {"cloud_link_tenants": tenants, **_dr_vars(site, plan, site_dir)}


def _dr_vars(site: Site, plan: Plan, site_dir: Path) -> dict[str, Any]:
    """roles/dr_layers: the layers, rclone crypt's pass (the tenant repository's) and the keys
    of the RGW user reading the buckets (made once, only where buckets are copied)."""
    from hzcloud import backup

    layers = backup.dr_layers(site, plan, site_dir)
    if not layers:
        return {"dr_layers_list": []}
    out: dict[str, Any] = {
        "dr_layers_list": [x.to_vars() for x in layers],
        "dr_layers_crypt_password": cloudlink.rclone_obscure(
            cloudlink.ensure_repo_key(site_dir, site.cloud.tenants[0].name)
        ),
    }
    if any(x.kind == "bucket" for x in layers):
        access, secret = cloudlink.ensure_rgw_reader_keys(site_dir)
        out |= {"dr_layers_rgw_access_key": access, "dr_layers_rgw_secret_key": secret}
    return out


LINK_VARS_FILE = "cloud_link.yml"


def _after_stack(site: Site, plan: Plan, site_dir: Path, made: dict[str, Any]) -> None:
    """Hand the playbook the link's and the stack's facts (keys in it: 0600, one writer)."""
    import os

    import yaml

    text = "# Written by the cloud phase (keys inside: mode 0600). Not to be edited.\n"
    text += yaml.safe_dump(link_vars(site, plan, site_dir, made), sort_keys=False)
    path = site_dir / "state" / "group_vars" / "all" / LINK_VARS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


PHASE = Phase(
    name="cloud",
    description="tenant side of s3-compatible tenants (versioned backup bucket, a backup user "
    "limited to it) through Pulumi, then the WireGuard link from the gateway and the backups "
    "into the tenant: PostgreSQL (pgBackRest repo2), etcd snapshots, bucket copies (rclone), "
    "all encrypted",
    executor="pulumi",
    # etcd of Kubernetes and the buckets of Ceph are copied too: after them, where the site has
    # them (a phase the site does not want is no prerequisite)
    depends_on=("base", "data", "storage", "kubernetes"),
    roles=("gateway",),
    playbook="cloud",
    wanted=lambda site: bool(site.cloud.tenants),
    needs=_needs,
    program=_program,
    after_stack=_after_stack,
)
