"""The tenant side on AWS with pulumi-aws: network, VPN gateway, KMS key, backup bucket, user.

Tested here with Pulumi's mocks only (tests/stacks/test_cloud_aws_alicloud.py): the provider
plugin, pulumi-resource-aws, cannot be built on this machine (its Go module is not served). A
site that brings the plugin file installs it with `pulumi plugin install resource aws VERSION
--file PATH`; `up` does not run this program yet (phases/cloud.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# backups older than this are kept only as noncurrent versions, then dropped
NONCURRENT_DAYS = 35


@dataclass(frozen=True)
class AwsTenantArgs:
    region: str
    bucket: str
    subnet: str  # the tenant network (a VPC of that CIDR), reached only through the link
    access_key: str
    secret_key: str
    user: str
    api: str = ""  # an endpoint override (a private or emulated AWS); "" = AWS itself
    noncurrent_days: int = NONCURRENT_DAYS


def bucket_user_policy(bucket_arn: str, key_arn: str) -> str:
    """The backup user's only policy: this bucket, its objects, and the bucket's KMS key."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"],
                    "Resource": [bucket_arn],
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:GetObjectVersion",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                    ],
                    "Resource": [f"{bucket_arn}/*"],
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


class AwsTenant(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: AwsTenantArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hzcloud:cloud:AwsTenant", name, None, opts)
        overrides = (
            {
                "endpoints": [
                    aws.ProviderEndpointArgs(
                        s3=args.api, ec2=args.api, iam=args.api, kms=args.api, sts=args.api
                    )
                ],
                "s3_use_path_style": True,
                "skip_credentials_validation": True,
                "skip_requesting_account_id": True,
                "skip_metadata_api_check": True,
            }
            if args.api
            else {}
        )
        provider = aws.Provider(
            f"{name}-aws",
            region=args.region,
            access_key=pulumi.Output.secret(args.access_key),
            secret_key=pulumi.Output.secret(args.secret_key),
            default_tags=aws.ProviderDefaultTagsArgs(tags={"hzcloud": name}),
            opts=pulumi.ResourceOptions(parent=self),
            **overrides,  # type: ignore[arg-type]
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=args.subnet, enable_dns_support=True, opts=child
        )
        self.private_subnet = aws.ec2.Subnet(
            f"{name}-private",
            vpc_id=self.vpc.id,
            cidr_block=args.subnet,
            map_public_ip_on_launch=False,
            opts=child,
        )
        self.vpn_gateway = aws.ec2.VpnGateway(f"{name}-vpn", vpc_id=self.vpc.id, opts=child)

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"hzcloud backups of {args.bucket}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.bucket, opts=child)
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=self.key.arn
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        self.public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-private-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="old-versions-and-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[self.versioning]
            ),
        )

        self.user = aws.iam.User(f"{name}-user", name=args.user, path="/hzcloud/", opts=child)
        self.policy = aws.iam.UserPolicy(
            f"{name}-user-policy",
            user=self.user.name,
            policy=pulumi.Output.all(self.bucket.arn, self.key.arn).apply(
                lambda arns: bucket_user_policy(arns[0], arns[1])
            ),
            opts=child,
        )
        self.access_key = aws.iam.AccessKey(f"{name}-user-key", user=self.user.name, opts=child)
        self.register_outputs(
            {
                "bucket": self.bucket.bucket,
                "vpc": self.vpc.id,
                "vpn_gateway": self.vpn_gateway.id,
                "access_key_id": self.access_key.id,
            }
        )


def program(tenants: dict[str, AwsTenantArgs]) -> None:
    for name, args in tenants.items():
        t = AwsTenant(name, args)
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
