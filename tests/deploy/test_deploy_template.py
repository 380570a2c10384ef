"""deploy/cyto-bot.yaml: cfn-lint clean, the properties moto ignores checked statically, the bot's
environment equal to what bot/settings.py reads, parameter constraints, and creation in moto for every
compute type."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.deploy.cfn_moto import (
    REGION,
    ROOT,
    TEMPLATE,
    ParameterError,
    create_stack,
    load_template,
    resolve_parameters,
    without_resources_moto_cannot_create,
)
from tests.timeouts import seconds

T = load_template()
R = T["Resources"]


def cfn_lint(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("cfn-lint")
    command = [exe] if exe else [sys.executable, "-m", "cfnlint"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=seconds(120), check=False)


def test_cfn_lint_clean() -> None:
    result = cfn_lint(str(TEMPLATE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_cfn_lint_refuses_a_default_outside_the_constraints(tmp_path: Path) -> None:
    """cfn-lint checks the template's own defaults against its constraints (E2015)."""
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text()
    old = "  MaxVcpus:\n    Type: Number\n    Default: 64"
    text = text.replace(old, old.replace("64", "5000"))
    broken.write_text(text)
    result = cfn_lint(str(broken))
    assert result.returncode != 0 and "E2015" in result.stdout, result.stdout


# -- parameters ---------------------------------------------------------------------------------------
REQUIRED = {"BucketName": "lab-bucket", "VpcId": "vpc-0123456789abcdef0",
            "Subnets": "subnet-0123456789abcdef0,subnet-0123456789abcdef1", "JobSecurityGroup": "sg-0123456789abcdef0",
            "SlackSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cyto-bot/slack-AbCdEf"}


def test_every_free_parameter_is_constrained_with_a_readable_message() -> None:
    for name, spec in T["Parameters"].items():
        if spec["Type"].startswith(("AWS::", "List<AWS::")) or spec["Type"] == "CommaDelimitedList":
            continue  # typed by CloudFormation itself (or a free list of instance types)
        constrained = {"AllowedValues", "AllowedPattern", "MinValue", "MaxValue"} & set(spec)
        assert constrained, f"{name} has no constraint"
        assert spec.get("ConstraintDescription"), f"{name} has no ConstraintDescription"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("MaxVcpus", "5000", "Parameter 'MaxVcpus' failed to satisfy constraint: a whole number of vCPUs from 1 to 4096."),
    ("MaxVcpus", "0", "Parameter 'MaxVcpus' failed to satisfy constraint: a whole number of vCPUs from 1 to 4096."),
    ("MaxVcpus", "lots", "Parameter 'MaxVcpus' must be a number"),
    ("JobAttempts", "11", "Parameter 'JobAttempts' failed to satisfy constraint: a whole number from 1 to 10"),
    ("JobTimeoutSeconds", "30", "Parameter 'JobTimeoutSeconds' failed to satisfy constraint: from 60 seconds"),
    ("ComputeType", "GPU", "Parameter 'ComputeType' failed to satisfy constraint: one of SPOT, EC2, FARGATE"),
    ("LogGroupRetentionDays", "45", "Parameter 'LogGroupRetentionDays' failed to satisfy constraint: one of the"),
    ("BotDesiredCount", "2", "Parameter 'BotDesiredCount' failed to satisfy constraint: 0 (stopped) or 1"),
    ("BucketName", "Lab_Bucket", "Parameter 'BucketName' failed to satisfy constraint: 3 to 63 lower-case"),
    ("SlackSecretArn", "xoxb-123", "Parameter 'SlackSecretArn' failed to satisfy constraint: the full ARN"),
    ("ImageTag", "bad tag", "Parameter 'ImageTag' failed to satisfy constraint: a Docker tag"),
    ("AllowedChannels", "#lab", "Parameter 'AllowedChannels' failed to satisfy constraint: Slack channel ids"),
])
def test_out_of_range_parameters_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(T, {**REQUIRED, name: value})
    assert str(caught.value).startswith(message)


def test_good_parameters_and_missing_ones() -> None:
    values = resolve_parameters(T, {**REQUIRED, "MaxVcpus": "256", "ComputeType": "FARGATE"})
    assert values["MaxVcpus"] == "256" and values["LogsExpirationDays"] == "90"
    with pytest.raises(ParameterError, match=r"Parameters: \[BucketName\] must have values"):
        resolve_parameters(T, {k: v for k, v in REQUIRED.items() if k != "BucketName"})
    with pytest.raises(ParameterError, match=r"Parameters: \[MaxVCPUs\] do not exist"):
        resolve_parameters(T, {**REQUIRED, "MaxVCPUs": "4"})


# -- what moto ignores, checked on the template -----------------------------------------------------
def test_bucket() -> None:
    bucket = R["Bucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"][k] is True for k in
               ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    logs_rule = next(r for r in bucket["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "Logs/")
    assert logs_rule["Status"] == "Enabled" and logs_rule["ExpirationInDays"] == {"Ref": "LogsExpirationDays"}
    assert R["Bucket"]["DeletionPolicy"] == "Retain"  # a stack deletion never deletes the lab's data
    policy = R["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Effect"] == "Deny" and policy["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_batch_and_logs() -> None:
    assert R["ImageRepository"]["Properties"]["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert R["LogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogGroupRetentionDays"}
    job = R["JobDefinition"]["Properties"]
    rules = job["RetryStrategy"]["EvaluateOnExit"]
    assert rules[0] == {"OnStatusReason": "Host EC2*", "Action": "RETRY"}
    assert rules[-1] == {"OnReason": "*", "Action": "EXIT"}
    assert job["Timeout"] == {"AttemptDurationSeconds": {"Ref": "JobTimeoutSeconds"}}
    assert job["ContainerProperties"]["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert T["Parameters"]["MaxVcpus"]["MinValue"] == 1 and T["Parameters"]["MaxVcpus"]["MaxValue"] == 4096


def test_bot_service_shape() -> None:
    service = R["BotService"]["Properties"]
    assert service["LaunchType"] == "FARGATE" and service["DesiredCount"] == {"Ref": "BotDesiredCount"}
    assert T["Parameters"]["BotDesiredCount"]["AllowedValues"] == [0, 1]
    # One writer of the SQLite database, even during a deployment.
    assert service["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert "LoadBalancers" not in service
    bot_sg = R["BotSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in bot_sg  # Socket Mode: no inbound port
    container = R["BotTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert "PortMappings" not in container
    assert container["MountPoints"][0]["ContainerPath"] == "/data"


def settings_variables() -> set[str]:
    """Every environment variable name bot/settings.py reads."""
    source = (ROOT / "bot" / "settings.py").read_text()
    return set(re.findall(r'get\("([A-Z_]+)"', source))


def test_bot_environment_uses_exactly_the_names_settings_reads() -> None:
    container = R["BotTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    secrets = {s["Name"] for s in container["Secrets"]}
    cyto_names = {n for n in env if not n.startswith("AWS_")}
    assert cyto_names | secrets <= settings_variables(), (cyto_names | secrets) - settings_variables()
    assert {"CYTO_STORE", "CYTO_EXECUTOR", "CYTO_DB", "CYTO_BATCH_JOB_QUEUE", "CYTO_BATCH_JOB_DEFINITION",
            "CYTO_LOG_GROUP"} <= set(env)
    assert secrets == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"}
    assert env["CYTO_EXECUTOR"] == "batch" and env["CYTO_DB"] == "/data/runs.sqlite"
    # The names the bot is given are the names the stack creates and outputs.
    assert env["CYTO_BATCH_JOB_QUEUE"] == R["JobQueue"]["Properties"]["JobQueueName"]
    assert env["CYTO_BATCH_JOB_DEFINITION"] == R["JobDefinition"]["Properties"]["JobDefinitionName"]
    assert env["CYTO_BATCH_JOB_QUEUE"] == T["Outputs"]["JobQueue"]["Value"]
    assert env["CYTO_BATCH_JOB_DEFINITION"] == T["Outputs"]["JobDefinition"]["Value"]


# -- in moto --------------------------------------------------------------------------------------
def test_only_the_bucket_policy_is_stripped_for_moto() -> None:
    _, dropped = without_resources_moto_cannot_create(T)
    assert dropped == ["BucketPolicy"]


def test_platform_follows_compute_type() -> None:
    job = R["JobDefinition"]["Properties"]
    assert job["PlatformCapabilities"] == [{"Fn::If": ["IsFargate", "FARGATE", "EC2"]}]
    assert T["Conditions"]["IsFargate"] == {"Fn::Or": [{"Fn::Equals": [{"Ref": "ComputeType"}, "FARGATE"]},
                                                       {"Fn::Equals": [{"Ref": "ComputeType"}, "FARGATE_SPOT"]}]}


@pytest.mark.parametrize("compute_type", ["SPOT", "FARGATE", "FARGATE_SPOT"])  # EC2 = SPOT's path
def test_stack_creates_in_moto(aws: None, compute_type: str) -> None:
    outputs = create_stack(ComputeType=compute_type, MaxVcpus="32")
    assert {"Bucket", "JobQueue", "JobDefinition", "LogGroup", "ImageRepository", "BotService"} <= set(outputs)
    batch = boto3.client("batch", region_name=REGION)
    queue = batch.describe_job_queues(jobQueues=[outputs["JobQueue"]])["jobQueues"][0]
    assert (queue["state"], queue["status"]) == ("ENABLED", "VALID")
    env: dict[str, Any] = batch.describe_compute_environments(
        computeEnvironments=[queue["computeEnvironmentOrder"][0]["computeEnvironment"]])["computeEnvironments"][0]
    assert env["computeResources"]["type"] == compute_type and env["computeResources"]["maxvCpus"] == 32
    definition = batch.describe_job_definitions(jobDefinitionName=outputs["JobDefinition"],
                                                status="ACTIVE")["jobDefinitions"][0]
    assert definition["containerProperties"]["image"] == f"{outputs['ImageRepository']}:latest"
    assert definition["retryStrategy"]["evaluateOnExit"][0]["onStatusReason"] == "Host EC2*"
    assert outputs["LogGroup"] in {g["logGroupName"] for g in
                                   boto3.client("logs", region_name=REGION).describe_log_groups()["logGroups"]}
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_bucket_encryption(Bucket=outputs["Bucket"])["ServerSideEncryptionConfiguration"]
    ecs = boto3.client("ecs", region_name=REGION)
    service = ecs.describe_services(cluster=outputs["BotCluster"], services=[outputs["BotService"]])["services"][0]
    # moto keeps neither LaunchType nor the job definition's PlatformCapabilities from CloudFormation;
    # test_bot_service_shape and test_platform_follows_compute_type check those on the template.
    assert service["desiredCount"] == 1
