"""cloud: the public-cloud tenant side (through Pulumi; the link and DR are not in this build).

What runs today, for `s3-compatible` tenants only: the backup bucket (versioned, private) and
a backup user whose key reaches that bucket only (stacks/cloud_s3.py, Pulumi dynamic providers
with boto3), made with the operator's key from secrets.yaml. Its outputs (bucket, user's key as
a secret) are the stack's, for the DR phase to come.

Not yet: the WireGuard link from the gateway, backups and restore drills (issue 14), and the
aws / alicloud programs (stacks/cloud_aws.py, stacks/cloud_alicloud.py: tested with mocks
only, their provider plugins cannot be built here). A site with such a tenant gets a
"not available yet" failure for this phase, before anything is made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
    for t in site.cloud.tenants:
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
        )
        for t in site.cloud.tenants
    }

    def program() -> None:
        s3.program(tenants)

    return program


PHASE = Phase(
    name="cloud",
    description="tenant side of s3-compatible tenants (versioned backup bucket, a backup user "
    "limited to it), through Pulumi; no link or DR yet",
    executor="pulumi",
    depends_on=("base",),
    roles=("gateway",),
    wanted=lambda site: bool(site.cloud.tenants),
    needs=_needs,
    program=_program,
)
