"""The tenant side on Alibaba Cloud with pulumi-alicloud: VPC, VPN gateway, KMS key, OSS bucket,
a RAM user limited to it.

Tested here with Pulumi's mocks only (tests/stacks/test_cloud_aws_alicloud.py): no Alibaba
emulator exists and the plugin, pulumi-resource-alicloud, cannot be built here (its Go module is
not served). `up` does not run this program yet (phases/cloud.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_alicloud as alicloud

NONCURRENT_DAYS = 35


@dataclass(frozen=True)
class AlicloudTenantArgs:
    region: str
    zone: str  # the zone of the vSwitch, e.g. cn-hangzhou-h
    bucket: str
    subnet: str
    access_key: str
    secret_key: str
    user: str
    api: str = ""  # an endpoint override host (a private Apsara stack); "" = Alibaba Cloud
    noncurrent_days: int = NONCURRENT_DAYS


def bucket_user_policy(bucket: str, key_arn: str) -> str:
    """The backup user's only policy: this OSS bucket, its objects and the bucket's KMS key."""
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["oss:ListObjects", "oss:ListObjectVersions", "oss:GetBucketInfo"],
                    "Resource": [f"acs:oss:*:*:{bucket}"],
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "oss:GetObject",
                        "oss:GetObjectVersion",
                        "oss:PutObject",
                        "oss:DeleteObject",
                        "oss:AbortMultipartUpload",
                    ],
                    "Resource": [f"acs:oss:*:*:{bucket}/*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": [key_arn],
                },
            ],
        },
        sort_keys=True,
    )


class AlicloudTenant(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: AlicloudTenantArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hzcloud:cloud:AlicloudTenant", name, None, opts)
        overrides = (
            {
                "endpoints": [
                    alicloud.ProviderEndpointArgs(
                        oss=args.api, vpc=args.api, ram=args.api, kms=args.api, sts=args.api
                    )
                ],
                "skip_region_validation": True,
            }
            if args.api
            else {}
        )
        provider = alicloud.Provider(
            f"{name}-alicloud",
            region=args.region,
            access_key=pulumi.Output.secret(args.access_key),
            secret_key=pulumi.Output.secret(args.secret_key),
            protocol="HTTPS",
            opts=pulumi.ResourceOptions(parent=self),
            **overrides,  # type: ignore[arg-type]
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)

        self.vpc = alicloud.vpc.Network(
            f"{name}-vpc", vpc_name=f"{name}-hzcloud", cidr_block=args.subnet, opts=child
        )
        self.vswitch = alicloud.vpc.Switch(
            f"{name}-private",
            vpc_id=self.vpc.id,
            cidr_block=args.subnet,
            zone_id=args.zone,
            vswitch_name=f"{name}-hzcloud",
            opts=child,
        )
        self.vpn_gateway = alicloud.vpn.Gateway(
            f"{name}-vpn",
            vpc_id=self.vpc.id,
            vswitch_id=self.vswitch.id,
            bandwidth=10,
            enable_ipsec=True,
            enable_ssl=False,
            payment_type="PayAsYouGo",
            vpn_gateway_name=f"{name}-hzcloud",
            opts=child,
        )
        self.key = alicloud.kms.Key(
            f"{name}-key",
            description=f"hzcloud backups of {args.bucket}",
            automatic_rotation="Enabled",
            rotation_interval="365d",
            pending_window_in_days=30,
            opts=child,
        )
        self.bucket = alicloud.oss.Bucket(
            f"{name}-bucket",
            bucket=args.bucket,
            acl="private",
            versioning=alicloud.oss.BucketVersioningArgs(status="Enabled"),
            server_side_encryption_rule=alicloud.oss.BucketServerSideEncryptionRuleArgs(
                sse_algorithm="KMS", kms_master_key_id=self.key.id
            ),
            lifecycle_rules=[
                alicloud.oss.BucketLifecycleRuleArgs(
                    id="old-versions-and-uploads",
                    enabled=True,
                    prefix="",
                    noncurrent_version_expirations=[
                        alicloud.oss.BucketLifecycleRuleNoncurrentVersionExpirationArgs(
                            days=args.noncurrent_days
                        )
                    ],
                    abort_multipart_uploads=[
                        alicloud.oss.BucketLifecycleRuleAbortMultipartUploadArgs(days=7)
                    ],
                )
            ],
            opts=child,
        )
        self.public_access = alicloud.oss.BucketPublicAccessBlock(
            f"{name}-private-access",
            bucket=self.bucket.bucket,
            block_public_access=True,
            opts=child,
        )
        self.user = alicloud.ram.User(f"{name}-user", name=args.user, opts=child)
        self.policy = alicloud.ram.Policy(
            f"{name}-user-policy",
            policy_name=f"{args.user}-bucket",
            policy_document=self.key.arn.apply(lambda arn: bucket_user_policy(args.bucket, arn)),
            opts=child,
        )
        self.attachment = alicloud.ram.UserPolicyAttachment(
            f"{name}-user-policy-attachment",
            user_name=self.user.name,
            policy_name=self.policy.policy_name,
            policy_type="Custom",
            opts=child,
        )
        self.access_key = alicloud.ram.AccessKey(
            f"{name}-user-key", user_name=self.user.name, opts=child
        )
        self.register_outputs(
            {
                "bucket": self.bucket.bucket,
                "vpc": self.vpc.id,
                "vpn_gateway": self.vpn_gateway.id,
                "access_key_id": self.access_key.id,
            }
        )


def program(tenants: dict[str, AlicloudTenantArgs]) -> None:
    for name, args in tenants.items():
        t = AlicloudTenant(name, args)
        pulumi.export(
            name,
            {
                "bucket": t.bucket.bucket,
                "vpc": t.vpc.id,
                "vpn_gateway": t.vpn_gateway.id,
                "access_key_id": t.access_key.id,
                "secret_access_key": pulumi.Output.secret(t.access_key.secret),
            },
        )
