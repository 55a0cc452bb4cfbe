"""Policy tests of the aws and alicloud tenant programs with Pulumi's mocks (no plugin, no cloud):
bucket versioned and encrypted with the tenant's KMS key, never public, old versions expire, the
backup user's policy names only its bucket (and key), every resource on the explicit provider.

pulumi-aws and pulumi-alicloud are the `cloud-providers` extra (431 MB): skipped without them,
except in CI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings as pulumi_settings

from hzcloud.executors.pulumi import load_stack_module


def _need(module: str) -> Any:
    try:
        return pytest.importorskip(module)
    except pytest.skip.Exception:
        if os.environ.get("CI"):
            pytest.fail("CI must run the cloud program tests: pip install -e '.[cloud-providers]'")
        raise


_need("pulumi_aws")
_need("pulumi_alicloud")

SUBNET = "172.31.0.0/16"
BUCKET = "hz-stgeorge-backup"
USER = "hz-stgeorge-backup"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        rid = f"{args.name}-id"
        if args.typ.startswith("aws:"):
            if args.typ == "aws:s3/bucket:Bucket":
                outputs["arn"] = f"arn:aws:s3:::{args.inputs['bucket']}"
                rid = args.inputs["bucket"]
            else:
                service = args.typ.split(":")[1].split("/")[0]
                outputs.setdefault("arn", f"arn:aws:{service}::123:{args.name}")
            if args.typ == "aws:iam/accessKey:AccessKey":
                outputs["secret"] = "mock-secret"
        if args.typ.startswith("alicloud:"):
            service = args.typ.split(":")[1].split("/")[0]
            outputs.setdefault("arn", f"acs:{service}:cn:123:{args.name}")
            if args.typ == "alicloud:ram/accessKey:AccessKey":
                outputs["secret"] = "mock-secret"
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}

    def of(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> dict[str, Any]:
        (found,) = self.of(typ)
        return dict(found.inputs)


@pytest.fixture
def mocks() -> Iterator[Mocks]:
    """Our mocks for one test, then the ones the other stack tests set at import."""
    before = getattr(pulumi_settings.SETTINGS.monitor, "mocks", None)
    m = Mocks()
    pulumi.runtime.set_mocks(m, preview=False)
    yield m
    if before is not None:
        pulumi.runtime.set_mocks(before, preview=False)


def _settled(*outputs: Any) -> Any:
    """Wait for everything the component registered (its outputs resolve last)."""
    return pulumi.Output.all(*outputs)


def _aws(mocks: Mocks, api: str = "") -> Any:
    aws = load_stack_module("cloud_aws")
    args = aws.AwsTenantArgs(
        region="eu-west-2",
        bucket=BUCKET,
        subnet=SUBNET,
        access_key="AKIAEXAMPLE",
        secret_key="s3cr3t",
        user=USER,
        api=api,
    )
    return aws, aws.AwsTenant("dr", args)


@pulumi.runtime.test
def test_aws_bucket_versioned_encrypted_private_with_lifecycle(mocks: Mocks) -> Any:
    aws, t = _aws(mocks)

    def check(_: Any) -> None:
        assert mocks.one("aws:s3/bucket:Bucket")["bucket"] == BUCKET
        versioning = mocks.one("aws:s3/bucketVersioning:BucketVersioning")
        assert versioning["bucket"] == BUCKET
        assert versioning["versioningConfiguration"]["status"] == "Enabled"
        (rule,) = mocks.one(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )["rules"]
        default = rule["applyServerSideEncryptionByDefault"]
        assert default["sseAlgorithm"] == "aws:kms"
        assert default["kmsMasterKeyId"] == "arn:aws:kms::123:dr-key"
        key = mocks.one("aws:kms/key:Key")
        assert key["enableKeyRotation"] is True
        block = mocks.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert all(
            block[k] is True
            for k in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
        )
        assert not mocks.of("aws:s3/bucketPolicy:BucketPolicy")
        assert not mocks.of("aws:s3/bucketAcl:BucketAcl")
        (life,) = mocks.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[
            "rules"
        ]
        assert life["status"] == "Enabled"
        assert life["noncurrentVersionExpiration"]["noncurrentDays"] == aws.NONCURRENT_DAYS
        assert life["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7

    return _settled(t.lifecycle.id, t.encryption.id, t.public_access.id).apply(check)


def _statements(policy: str) -> list[dict[str, Any]]:
    doc = json.loads(policy)
    return list(doc["Statement"])


@pulumi.runtime.test
def test_aws_user_policy_names_only_its_bucket_and_key(mocks: Mocks) -> Any:
    _, t = _aws(mocks)

    def check(_: Any) -> None:
        assert mocks.one("aws:iam/user:User")["name"] == USER
        policy = mocks.one("aws:iam/userPolicy:UserPolicy")
        assert policy["user"] == USER
        resources = [r for s in _statements(policy["policy"]) for r in s["Resource"]]
        assert sorted(resources) == sorted(
            [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*", "arn:aws:kms::123:dr-key"]
        )
        actions = [a for s in _statements(policy["policy"]) for a in s["Action"]]
        assert all("*" not in a for a in actions), actions
        assert "s3:DeleteBucket" not in actions and not any(a.startswith("iam:") for a in actions)
        assert all(s["Effect"] == "Allow" for s in _statements(policy["policy"]))

    return _settled(t.policy.id, t.access_key.id).apply(check)


@pulumi.runtime.test
def test_aws_network_and_vpn_gateway_on_the_tenant_subnet(mocks: Mocks) -> Any:
    _, t = _aws(mocks)

    def check(_: Any) -> None:
        assert mocks.one("aws:ec2/vpc:Vpc")["cidrBlock"] == SUBNET
        subnet = mocks.one("aws:ec2/subnet:Subnet")
        assert subnet["vpcId"] == "dr-vpc-id" and subnet["mapPublicIpOnLaunch"] is False
        assert mocks.one("aws:ec2/vpnGateway:VpnGateway")["vpcId"] == "dr-vpc-id"
        assert not mocks.of("aws:ec2/internetGateway:InternetGateway")

    return _settled(t.vpn_gateway.id, t.private_subnet.id).apply(check)


@pulumi.runtime.test
def test_aws_every_resource_uses_the_explicit_provider(mocks: Mocks) -> Any:
    _, t = _aws(mocks, api="https://aws.tenant.example.org")

    def check(_: Any) -> None:
        (provider,) = mocks.of("pulumi:providers:aws")
        assert provider.inputs["s3UsePathStyle"] == "true"  # provider config is text
        objects = [r for r in mocks.resources if r.typ.startswith("aws:")]
        assert len(objects) >= 12
        assert all(r.provider and "dr-aws" in r.provider for r in objects), [
            (r.typ, r.provider) for r in objects
        ]

    return _settled(t.access_key.id, t.lifecycle.id).apply(check)


def _alicloud(mocks: Mocks) -> Any:
    ali = load_stack_module("cloud_alicloud")
    args = ali.AlicloudTenantArgs(
        region="cn-hangzhou",
        zone="cn-hangzhou-h",
        bucket=BUCKET,
        subnet=SUBNET,
        access_key="LTAIEXAMPLE",
        secret_key="s3cr3t",
        user=USER,
    )
    return ali, ali.AlicloudTenant("dr", args)


@pulumi.runtime.test
def test_alicloud_bucket_versioned_encrypted_private_with_lifecycle(mocks: Mocks) -> Any:
    ali, t = _alicloud(mocks)

    def check(_: Any) -> None:
        bucket = mocks.one("alicloud:oss/bucket:Bucket")
        assert bucket["bucket"] == BUCKET
        assert bucket["versioning"]["status"] == "Enabled"
        assert bucket["acl"] == "private"
        sse = bucket["serverSideEncryptionRule"]
        assert sse["sseAlgorithm"] == "KMS" and sse["kmsMasterKeyId"] == "dr-key-id"
        assert mocks.one("alicloud:kms/key:Key")["automaticRotation"] == "Enabled"
        (life,) = bucket["lifecycleRules"]
        assert life["enabled"] is True
        assert life["noncurrentVersionExpirations"][0]["days"] == ali.NONCURRENT_DAYS
        block = mocks.one("alicloud:oss/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert block["blockPublicAccess"] is True and block["bucket"] == BUCKET
        (provider,) = mocks.of("pulumi:providers:alicloud")
        assert provider.inputs["protocol"] == "HTTPS"

    return _settled(t.bucket.id, t.public_access.id).apply(check)


@pulumi.runtime.test
def test_alicloud_user_policy_names_only_its_bucket_and_key(mocks: Mocks) -> Any:
    _, t = _alicloud(mocks)

    def check(_: Any) -> None:
        policy = mocks.one("alicloud:ram/policy:Policy")
        resources = [r for s in _statements(policy["policyDocument"]) for r in s["Resource"]]
        assert sorted(resources) == sorted(
            [f"acs:oss:*:*:{BUCKET}", f"acs:oss:*:*:{BUCKET}/*", "acs:kms:cn:123:dr-key"]
        )
        actions = [a for s in _statements(policy["policyDocument"]) for a in s["Action"]]
        assert all("*" not in a for a in actions), actions
        attach = mocks.one("alicloud:ram/userPolicyAttachment:UserPolicyAttachment")
        assert attach["userName"] == USER and attach["policyType"] == "Custom"
        assert mocks.one("alicloud:vpc/network:Network")["cidrBlock"] == SUBNET
        assert mocks.one("alicloud:vpn/gateway:Gateway")["vpcId"] == "dr-vpc-id"
        objects = [r for r in mocks.resources if r.typ.startswith("alicloud:")]
        assert all(r.provider and "dr-alicloud" in r.provider for r in objects)

    return _settled(t.attachment.id, t.access_key.id, t.vpn_gateway.id).apply(check)
