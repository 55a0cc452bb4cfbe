"""The s3-compatible tenant program FOR REAL: the pulumi engine, the dynamic provider and boto3
against an emulated S3 + IAM service (moto_server on 127.0.0.1 only), through the same
Automation API path `hzcloud up` takes (executors.pulumi.run_pulumi).

Needs HZCLOUD_ARTIFACTS (bin/pulumi, bin/pulumi-resource-pulumi-python: the pulumi group of
scripts/build-artifacts, built here if missing) and moto[server] (the test extra): skipped
without them, except in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hzcloud.executors.pulumi import load_stack_module, outputs, project_of, run_pulumi
from hzcloud.outcome import Event

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

REGION = "eu-west-2"
BUCKET = "hz-cst-backup"
USER = "hz-cst-backup"
PASSPHRASE = "test-only-passphrase"
# moto checks IAM only after its first N requests: the test makes its admin in those
BOOTSTRAP_REQUESTS = 3
NEEDED = ("pulumi", "pulumi-resource-kubernetes", "pulumi-resource-pulumi-python")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the cloud tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    wanted = os.environ.get("HZCLOUD_ARTIFACTS")
    if not wanted:
        _unavailable("HZCLOUD_ARTIFACTS is not set (scripts/test sets it)")
    folder = Path(str(wanted))
    if all((folder / "bin" / name).exists() for name in NEEDED):
        return folder
    # the pulumi group only (seconds once built), under scripts/test's build lock
    script = Path(__file__).resolve().parents[2] / "scripts" / "build-artifacts"
    res = subprocess.run(
        ["flock", f"{folder}.lock", str(script), str(folder)],
        env={**os.environ, "HZCLOUD_ARTIFACTS_ONLY": "pulumi"},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert res.returncode == 0, f"building the pulumi artifacts failed:\n{res.stderr[-3000:]}"
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Moto:
    url: str
    admin: tuple[str, str]

    def client(self, service: str, key: tuple[str, str]) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=Config(s3={"addressing_style": "path"}),
        )


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        _unavailable("moto_server is not installed (pip install -e '.[test]')")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_REQUESTS),
        "MOTO_ALLOW_NONEXISTENT_REGION": "false",
    }
    with log.open("wb") as out:
        # loopback only: the emulator accepts any request from anyone who can reach it
        proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out, env=env
        )
    try:
        deadline = time.monotonic() + 60
        while True:  # a TCP connect, not a request: requests count towards BOOTSTRAP_REQUESTS
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        anyone = Moto(url, ("bootstrap", "bootstrap"))
        iam = anyone.client("iam", anyone.admin)
        iam.create_user(UserName="operator")
        iam.put_user_policy(
            UserName="operator",
            PolicyName="all",
            PolicyDocument='{"Version": "2012-10-17", "Statement": '
            '[{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
        )
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        yield Moto(url, (key["AccessKeyId"], key["SecretAccessKey"]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_moto_checks_keys_after_the_bootstrap(moto: Moto) -> None:
    """Without this, 'the user cannot write elsewhere' below would prove nothing."""
    with pytest.raises(ClientError):
        moto.client("s3", ("nobody", "nothing")).list_buckets()
    moto.client("s3", moto.admin).list_buckets()


def test_up_twice_write_only_to_its_bucket_then_destroy(
    moto: Moto, artifacts: Path, tmp_path: Path
) -> None:
    cloud_s3 = load_stack_module("cloud_s3")
    args = cloud_s3.S3TenantArgs(
        endpoint=moto.url,
        region=REGION,
        bucket=BUCKET,
        access_key=moto.admin[0],
        secret_key=moto.admin[1],
        user=USER,
        force_destroy=True,  # the test writes an object; a site's destroy would keep backups
    )
    events: list[Event] = []
    project = project_of("cloud")

    def run(action: str = "up") -> Any:
        t0 = time.monotonic()
        result = run_pulumi(
            "cloud",
            tmp_path,
            project,
            "cst",
            lambda: cloud_s3.program({"dr": args}),
            events.append,
            artifacts,
            PASSPHRASE,
            action,
        )
        print(f"pulumi {action}: {time.monotonic() - t0:.1f} s, {result.changed} changed")
        assert result.ok, result.failures
        return result

    admin_s3 = moto.client("s3", moto.admin)
    admin_s3.create_bucket(
        Bucket="someone-else", CreateBucketConfiguration={"LocationConstraint": REGION}
    )

    first = run()
    made = sorted(e.task.rsplit(" ", 1)[-1] for e in events if e.kind == "changed")
    assert made == ["default", "dr", "dr-bucket", "dr-user", "hzcloud-cloud-cst"], made
    assert first.changed == 4  # the stack, the component, the bucket, the user (not the provider)
    assert admin_s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    block = admin_s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()), block
    iam = moto.client("iam", moto.admin)
    policy = iam.get_user_policy(UserName=USER, PolicyName=cloud_s3.POLICY_NAME)
    assert BUCKET in str(policy["PolicyDocument"])

    events.clear()
    second = run()
    assert not [e for e in events if e.kind == "changed"], events
    assert second.changed == 0, "a second up with nothing changed must change nothing"

    # the tenant loses both (a new account, a rebuilt emulator): the state must not be trusted
    for k in iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=USER, AccessKeyId=k["AccessKeyId"])
    iam.delete_user_policy(UserName=USER, PolicyName=cloud_s3.POLICY_NAME)
    iam.delete_user(UserName=USER)
    admin_s3.delete_bucket(Bucket=BUCKET)
    events.clear()
    third = run()
    assert third.changed == 2, events  # the bucket and the user, made again
    assert admin_s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"

    out = outputs(tmp_path, project, "cst", artifacts, PASSPHRASE)["dr"]
    assert out["bucket"] == BUCKET and out["user"] == USER
    key = (out["access_key_id"], out["secret_access_key"])
    assert key[0] != moto.admin[0]
    user_s3 = moto.client("s3", key)
    user_s3.put_object(Bucket=BUCKET, Key="base/backup.info", Body=b"full backup 1")
    assert user_s3.get_object(Bucket=BUCKET, Key="base/backup.info")["Body"].read() == (
        b"full backup 1"
    )
    with pytest.raises(ClientError) as denied:
        user_s3.put_object(Bucket="someone-else", Key="x", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        user_s3.create_bucket(
            Bucket="another-one", CreateBucketConfiguration={"LocationConstraint": REGION}
        )

    state = (tmp_path / "pulumi").rglob("*.json")
    texts = "".join(p.read_text() for p in state)
    assert moto.admin[1] not in texts and key[1] not in texts, "secrets in clear in the state"

    run("destroy")
    names = [b["Name"] for b in admin_s3.list_buckets()["Buckets"]]
    assert BUCKET not in names and "someone-else" in names
    assert USER not in [u["UserName"] for u in iam.list_users()["Users"]]


def test_the_cloud_phase_makes_the_sample_tenant_from_site_yaml(
    moto: Moto, artifacts: Path, tmp_path: Path
) -> None:
    """site.yaml's tenant + the operator's keys in secrets.yaml -> the cloud phase's executor
    (as `up` calls it) -> the bucket hz-<code>-backup and user hz-<code>-backup in the tenant."""
    import dataclasses

    import yaml

    from hzcloud.executors import RunContext
    from hzcloud.executors import pulumi as pulumi_executor
    from hzcloud.model import load_site
    from hzcloud.phases import cloud
    from hzcloud.plan import plan_site
    from hzcloud.secrets import ensure_secrets

    site_dir = tmp_path / "stgeorge"
    site_dir.mkdir()
    data = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "inventories/sample-hospital/site.yaml").read_text()
    )
    # loopback: plain HTTP is accepted for an address no other host reaches
    data["cloud"]["tenants"][0].update(api=moto.url, region=REGION)
    (site_dir / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (site_dir / "artifacts").symlink_to(artifacts)
    ensure_secrets(site_dir)
    secrets = yaml.safe_load((site_dir / "secrets.yaml").read_text())
    secrets.update(tenant_dr_access_key=moto.admin[0], tenant_dr_secret_key=moto.admin[1])
    (site_dir / "secrets.yaml").write_text(yaml.safe_dump(secrets))

    site = load_site(site_dir)
    ctx = RunContext(site, plan_site(site), site_dir)
    events: list[Event] = []
    # the phase's stack half: its playbook (the link, the backups) needs servers (test_cloud.py)
    stack_only = dataclasses.replace(cloud.PHASE, playbook="", after_stack=None)
    result = pulumi_executor.run(stack_only, ctx, events.append)
    assert result.ok, result.failures
    admin_s3 = moto.client("s3", moto.admin)
    assert admin_s3.get_bucket_versioning(Bucket="hz-stgeorge-backup")["Status"] == "Enabled"
    iam = moto.client("iam", moto.admin)
    assert "hz-stgeorge-backup" in [u["UserName"] for u in iam.list_users()["Users"]]
    again = pulumi_executor.run(stack_only, ctx, events.append)
    assert again.ok and again.changed == 0

    gone = run_pulumi(
        "cloud",
        ctx.state_dir,
        project_of("cloud"),
        site.hospital.code,
        cloud.PHASE.program(site, ctx.plan, site_dir),  # type: ignore[misc]
        events.append,
        artifacts,
        secrets["pulumi_passphrase"],
        "destroy",
    )
    assert gone.ok, gone.failures
    assert "hz-stgeorge-backup" not in [b["Name"] for b in admin_s3.list_buckets()["Buckets"]]
