"""The AWS region the AWS way: AWS_REGION alone is enough (botocore by itself reads only
AWS_DEFAULT_REGION and the profile), a profile's region is honoured, and a client that cannot be
made is one clear line, in the store, the executor, the job's staging and `cyto doctor`."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from bot import aws as bot_aws
from bot.cli import cli
from bot.executors import ExecutorError
from bot.executors.batch import BatchExecutor
from bot.store import StoreError
from bot.store.s3 import S3Store
from container import staging
from tests.aws.conftest import Aws

pytest_plugins = ["tests.aws.conftest"]


@pytest.fixture
def only_aws_region(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    boto3.client("s3", region_name="eu-west-2").create_bucket(
        Bucket="lab-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    return "eu-west-2"


def test_only_aws_region_reaches_every_client(only_aws_region: str, tmp_path: Path) -> None:
    assert bot_aws.client("batch").meta.region_name == only_aws_region
    assert bot_aws.region() == (only_aws_region, "AWS_REGION")

    store = S3Store.from_uri("s3://lab-bucket/lab")
    store.check()
    store.write_bytes("Input/2018-12-05/b7/A01/x.txt", b"hello")
    assert store.client.meta.region_name == only_aws_region

    executor = BatchExecutor("queue", "definition")
    assert executor.batch.meta.region_name == only_aws_region
    assert executor.batch.describe_job_queues(jobQueues=["queue"])["jobQueues"] == []

    assert staging._s3_client().meta.region_name == only_aws_region
    files = staging.download_prefix("s3://lab-bucket/lab/Input/2018-12-05/b7/A01/", tmp_path / "in")
    assert [f.read_text() for f in files] == ["hello"]


def test_doctor_with_only_aws_region_is_green(only_aws_region: str, tmp_path: Path) -> None:
    env = {"CYTO_STORE": "s3://lab-bucket/lab", "CYTO_DB": str(tmp_path / "runs.sqlite"),
           "CYTO_LOCAL_SPOOL": str(tmp_path / "spool"), "CYTO_LOCAL_COMMAND": "true"}
    result = CliRunner().invoke(cli, ["doctor", "--no-slack"], env=env)
    assert "✓ AWS region: eu-west-2 (from AWS_REGION)" in result.output
    assert "✓ Store bucket: s3://lab-bucket/lab is reachable" in result.output
    assert result.exit_code == 0, result.output


def test_a_profiles_region_is_used(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[profile lab]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "lab")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert bot_aws.client("batch").meta.region_name == "ap-south-1"
    assert bot_aws.region() == ("ap-south-1", "profile lab")
    monkeypatch.setenv("AWS_REGION", "eu-west-2")  # the environment wins over the profile, as in the AWS CLI
    assert bot_aws.client("batch").meta.region_name == "eu-west-2"


def test_client_creation_errors_are_one_line(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ExecutorError) as no_region:
        _ = BatchExecutor("queue", "definition").batch
    assert str(no_region.value) == ("the AWS batch client: no AWS region configured: set AWS_REGION (for example "
                                    "eu-west-1), or a region in the AWS profile (aws configure set region ...)")

    env = {"CYTO_STORE": "s3://lab-bucket", "CYTO_EXECUTOR": "batch", "CYTO_BATCH_JOB_QUEUE": "q",
           "CYTO_BATCH_JOB_DEFINITION": "d", "CYTO_DB": str(tmp_path / "runs.sqlite")}
    doctor = CliRunner().invoke(cli, ["doctor", "--no-slack"], env=env)
    assert doctor.exception is None or isinstance(doctor.exception, SystemExit), doctor.output
    assert "Traceback" not in doctor.output and "NoRegionError" not in doctor.output
    assert "✗ AWS region: no region in AWS_REGION, AWS_DEFAULT_REGION or the AWS profile" in doctor.output
    assert "✗ Batch job queue: no AWS region configured" in doctor.output
    assert doctor.exit_code != 0

    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(StoreError) as no_profile:
        S3Store.from_uri("s3://lab-bucket").check()
    assert "\n" not in str(no_profile.value)
    assert "AWS profile 'nobody' is not in the AWS config files (AWS_PROFILE)" in str(no_profile.value)
    with pytest.raises(staging.StagingError, match=r"cannot make an S3 client .*nobody"):
        staging._s3_client()
    run = CliRunner().invoke(cli, ["batches"], env={"CYTO_STORE": "s3://lab-bucket", "CYTO_LOCAL_SPOOL": str(tmp_path),
                                                    "CYTO_DB": str(tmp_path / "runs.sqlite")})
    assert run.exit_code == 2 and run.output.count("\n") == 1 and "AWS profile 'nobody'" in run.output


def test_boto3s_own_retry_variables_win_over_the_projects_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_MAX_ATTEMPTS and AWS_RETRY_MODE are boto3's documented knobs: an operator who sets them
    gets them, for every client (the project's defaults apply only when they are not set)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    defaults = bot_aws.client("batch").meta.config.retries
    assert defaults["mode"] == "standard" and defaults["total_max_attempts"] == bot_aws.DEFAULT_MAX_ATTEMPTS
    assert bot_aws.client("s3", max_attempts=2).meta.config.retries["total_max_attempts"] == 2
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    for retries in (bot_aws.client("batch").meta.config.retries,
                    bot_aws.client("s3", max_attempts=2).meta.config.retries):
        assert retries["mode"] == "adaptive" and retries["total_max_attempts"] == 1, retries
