"""The tenant side on any S3-compatible service: the versioned backup bucket and its own key.

No provider plugin exists for "any S3 service", and none of the big clouds' plugins can be built
here (their Go modules are not served), so the resources are Pulumi dynamic providers speaking
boto3: they need only the pulumi CLI and `pulumi-resource-pulumi-python` from the artifacts
folder. The same program serves AWS S3, Ceph RGW, MinIO, Alibaba OSS's S3 API or an emulator.

- BackupBucket: created in the region, versioning on (a ransomware overwrite keeps the old
  version), public access blocked and default encryption asked for where the service has them.
  Destroy refuses a bucket holding backups unless force_destroy is set.
- BucketUser (where the service has IAM): a user whose only policy names this bucket, and one
  access key for the site's backup tools; the secret is a Pulumi secret output.

The operator's (admin) key is an input, kept encrypted in the stack's state; changing it (key
rotation) changes nothing in the tenant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

# what decides the tenant's resources; the admin key only lets us act on them
_CONNECTION = ("endpoint", "region", "access_key", "secret_key")


def _client(service: str, props: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=props["endpoint"],
        region_name=props["region"],
        aws_access_key_id=props["access_key"],
        aws_secret_access_key=props["secret_key"],
        # a tenant whose API certificate is signed by a CA of its own (the lab's cloud)
        verify=props.get("ca_bundle") or None,
        # path style: an emulator or a private service has no per-bucket DNS names
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


# what a service answers for a bucket or user that is not there (S3's HEAD has no body: "404")
_GONE = ("404", "NoSuchBucket", "NotFound", "NoSuchEntity")


def _changed(olds: dict[str, Any], news: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if olds.get(k) != news.get(k)]


class BucketProvider(ResourceProvider):
    """A versioned, private bucket: inputs endpoint, region, keys, bucket, force_destroy."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        s3 = _client("s3", props)
        name = props["bucket"]
        kwargs: dict[str, Any] = {"Bucket": name}
        if props["region"] != "us-east-1":  # S3 refuses a LocationConstraint of us-east-1
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": props["region"]}
        try:
            s3.create_bucket(**kwargs)
        except Exception as exc:
            # our own bucket from an interrupted run: take it over; anyone else's: fail
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        self._harden(s3, name)
        return CreateResult(id_=name, outs={**props, "arn": f"arn:aws:s3:::{name}"})

    @staticmethod
    def _harden(s3: Any, name: str) -> None:
        """Public access blocked, encryption at rest: asked of every service; a service
        without the API (NotImplemented) keeps its own defaults."""
        calls = (
            lambda: s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            ),
            lambda: s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            ),
        )
        for call in calls:
            try:
                call()
            except Exception as exc:
                if _error_code(exc) not in ("NotImplemented", "501"):
                    raise

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Refresh (every `up`): a bucket gone from the tenant (emptied account, a new emulated
        tenant) leaves the state, so the update creates it again instead of trusting the state.
        An unreachable tenant raises: the phase fails and says why."""
        try:
            _client("s3", props).head_bucket(Bucket=props["bucket"])
        except Exception as exc:
            if _error_code(exc) in _GONE:
                return ReadResult(id_=None, outs={})
            raise
        return ReadResult(id_=id_, outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # a new name, region or service is another bucket; a rotated admin key is not
        replaces = _changed(olds, news, ("bucket", "region", "endpoint"))
        changes = replaces + _changed(olds, news, ("force_destroy",))
        return DiffResult(changes=bool(changes), replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**olds, **news})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        s3 = _client("s3", props)
        name = props["bucket"]
        if props.get("force_destroy"):
            pages = s3.get_paginator("list_object_versions").paginate(Bucket=name)
            for page in pages:
                gone = [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
                ]
                if gone:
                    s3.delete_objects(Bucket=name, Delete={"Objects": gone, "Quiet": True})
        try:
            s3.delete_bucket(Bucket=name)
        except Exception as exc:
            if _error_code(exc) == "NoSuchBucket":
                return
            if _error_code(exc) == "BucketNotEmpty":
                raise RuntimeError(
                    f"bucket {name} still holds backups: hzcloud does not delete them "
                    "(empty it yourself, or set force_destroy for a test tenant)"
                ) from exc
            raise


def bucket_policy(bucket: str) -> str:
    """The backup user's only policy: this bucket and its objects, nothing else."""
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListTheBackupBucket",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"],
                    "Resource": [arn],
                },
                {
                    "Sid": "ReadWriteBackups",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:GetObjectVersion",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    "Resource": [f"{arn}/*"],
                },
            ],
        },
        sort_keys=True,
    )


POLICY_NAME = "hzcloud-backup-bucket"


class UserProvider(ResourceProvider):
    """An IAM user limited to one bucket, with one access key: inputs connection, user, bucket."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        iam = _client("iam", props)
        user = props["user"]
        try:
            iam.create_user(UserName=user, Path="/hzcloud/")
        except Exception as exc:
            if _error_code(exc) != "EntityAlreadyExists":
                raise
            self._remove_keys(iam, user)  # its old key's secret is lost: make a new one
        iam.put_user_policy(
            UserName=user, PolicyName=POLICY_NAME, PolicyDocument=bucket_policy(props["bucket"])
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        outs = {
            **props,
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }
        return CreateResult(id_=user, outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Refresh: a user or access key gone from the tenant leaves the state (the update makes
        them again, and the site's backup tools get the new key)."""
        iam = _client("iam", props)
        try:
            keys = iam.list_access_keys(UserName=props["user"])["AccessKeyMetadata"]
        except Exception as exc:
            if _error_code(exc) in _GONE:
                return ReadResult(id_=None, outs={})
            raise
        if props.get("access_key_id") not in {k["AccessKeyId"] for k in keys}:
            return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = _changed(olds, news, ("user", "region", "endpoint"))
        changes = replaces + _changed(olds, news, ("bucket",))
        return DiffResult(changes=bool(changes), replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # another bucket: the same user, its policy naming the new bucket only
        iam = _client("iam", news)
        iam.put_user_policy(
            UserName=news["user"],
            PolicyName=POLICY_NAME,
            PolicyDocument=bucket_policy(news["bucket"]),
        )
        return UpdateResult(outs={**olds, **news})

    @staticmethod
    def _remove_keys(iam: Any, user: str) -> None:
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        iam = _client("iam", props)
        user = props["user"]
        try:
            self._remove_keys(iam, user)
            iam.delete_user_policy(UserName=user, PolicyName=POLICY_NAME)
            iam.delete_user(UserName=user)
        except Exception as exc:
            if _error_code(exc) != "NoSuchEntity":
                raise


class BackupBucket(pulumi.dynamic.Resource):
    arn: pulumi.Output[str]
    bucket: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(BucketProvider(), name, {"arn": None, **props}, opts)


class BucketUser(pulumi.dynamic.Resource):
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]
    user: pulumi.Output[str]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["secret_access_key"])
        )
        super().__init__(
            UserProvider(),
            name,
            {"access_key_id": None, "secret_access_key": None, **props},
            opts,
        )


@dataclass(frozen=True)
class S3TenantArgs:
    endpoint: str  # the S3 (and IAM) endpoint URL
    region: str
    bucket: str
    access_key: str  # the operator's key for the tenant (secrets.yaml)
    secret_key: str
    user: str = ""  # the backup user to make; "" where the service has no IAM
    force_destroy: bool = False  # destroy deletes the backups too (test tenants only)
    ca_bundle: str = ""  # a CA file for the API's certificate; "": the system's


class S3Tenant(pulumi.ComponentResource):
    """The backup bucket of a site on an S3-compatible tenant, and the key its tools use."""

    def __init__(
        self, name: str, args: S3TenantArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hzcloud:cloud:S3Tenant", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        connection = {
            "endpoint": args.endpoint,
            "region": args.region,
            "access_key": pulumi.Output.secret(args.access_key),
            "secret_key": pulumi.Output.secret(args.secret_key),
        }
        if args.ca_bundle:
            connection["ca_bundle"] = args.ca_bundle
        self.bucket = BackupBucket(
            f"{name}-bucket",
            {**connection, "bucket": args.bucket, "force_destroy": args.force_destroy},
            child,
        )
        self.user: BucketUser | None = None
        outputs: dict[str, Any] = {"bucket": self.bucket.bucket, "arn": self.bucket.arn}
        if args.user:
            self.user = BucketUser(
                f"{name}-user",
                {**connection, "user": args.user, "bucket": self.bucket.bucket},
                child,
            )
            outputs["access_key_id"] = self.user.access_key_id
        self.register_outputs(outputs)


def program(tenants: dict[str, S3TenantArgs]) -> None:
    """Inline program: each tenant's bucket and user; outputs per tenant, the key a secret."""
    for name, args in tenants.items():
        tenant = S3Tenant(name, args)
        out: dict[str, Any] = {
            "endpoint": args.endpoint,
            "region": args.region,
            "bucket": tenant.bucket.bucket,
        }
        if tenant.user is not None:
            out["user"] = tenant.user.user
            out["access_key_id"] = tenant.user.access_key_id
            out["secret_access_key"] = pulumi.Output.secret(tenant.user.secret_access_key)
        pulumi.export(name, out)
