"""deploy/cyto-bot.yaml: cfn-lint clean, the properties moto ignores checked statically, the bot's
environment equal to what bot/settings.py reads, parameter constraints and rules, and creation in moto
for every compute type and every run database (SQLite on EFS, or a PostgreSQL ledger)."""

from __future__ import annotations

import json
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
    check_rules,
    create_stack,
    for_parameters,
    load_template,
    resolve_parameters,
    without_resources_moto_cannot_create,
)
from tests.timeouts import seconds

T = load_template()
R = T["Resources"]
LEDGERS = ["sqlite", "aurora-serverless-v2", "rds-postgres"]
POSTGRES = LEDGERS[1:]


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
    ("BotDesiredCount", "4", "Parameter 'BotDesiredCount' failed to satisfy constraint: 0 (stopped), 1"),
    ("LedgerEngine", "mysql", "Parameter 'LedgerEngine' failed to satisfy constraint: sqlite, aurora-serverless-v2"),
    ("LedgerClientCidr", "0.0.0.0/0", "Parameter 'LedgerClientCidr' failed to satisfy constraint: empty, or an IPv4"),
    ("LedgerClientCidr", "10.8.0.0", "Parameter 'LedgerClientCidr' failed to satisfy constraint: empty, or an IPv4"),
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


@pytest.mark.parametrize("ledger", LEDGERS)
def test_more_than_one_bot_only_on_postgresql(ledger: str) -> None:
    for count in ("0", "1", "2", "3"):
        values = resolve_parameters(T, {**REQUIRED, "LedgerEngine": ledger, "BotDesiredCount": count})
        if ledger == "sqlite" and count in ("2", "3"):
            with pytest.raises(ParameterError, match="BotDesiredCount above 1 needs a PostgreSQL ledger"):
                check_rules(T, values)
        else:
            check_rules(T, values)


def decided(**given: str) -> dict[str, Any]:
    """The template as CloudFormation sees it for these parameters (conditions decided)."""
    return for_parameters(T, resolve_parameters(T, {**REQUIRED, **given}))


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


@pytest.mark.parametrize("ledger", LEDGERS)
def test_bot_service_shape(ledger: str) -> None:
    resources = decided(LedgerEngine=ledger)["Resources"]
    service = resources["BotService"]["Properties"]
    assert service["LaunchType"] == "FARGATE" and service["DesiredCount"] == {"Ref": "BotDesiredCount"}
    assert T["Parameters"]["BotDesiredCount"]["AllowedValues"] == [0, 1, 2, 3]
    deployment = service["DeploymentConfiguration"]
    if ledger == "sqlite":  # one writer of the SQLite database, even during a deployment
        assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (0, 100)
    else:  # several bots share the PostgreSQL ledger: new ones start before old ones stop
        assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)
    assert "LoadBalancers" not in service
    bot_sg = resources["BotSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in bot_sg  # Socket Mode: no inbound port
    container = resources["BotTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert "PortMappings" not in container
    assert container["MountPoints"][0]["ContainerPath"] == "/data"


LEDGER_RESOURCES = {"LedgerSecret", "LedgerSecurityGroup", "LedgerSubnetGroup", "LedgerSecretAttachment"}


def test_sqlite_makes_no_ledger_resources() -> None:
    template = decided()
    assert not {n for n in template["Resources"] if n.startswith("Ledger")}
    assert not {n for n in template["Outputs"] if n.startswith("Ledger")}
    statements = template["Resources"]["BotExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [s["Sid"] for s in statements] == ["EcrToken", "PullImage", "WriteBotLogs", "ReadSlackTokens"]


@pytest.mark.parametrize("ledger", POSTGRES)
@pytest.mark.parametrize("cidr", ["", "10.8.0.0/16"])
def test_postgresql_ledger(ledger: str, cidr: str) -> None:
    resources = decided(LedgerEngine=ledger, LedgerClientCidr=cidr)["Resources"]
    database_name = "LedgerCluster" if ledger == "aurora-serverless-v2" else "LedgerInstance"
    expected = LEDGER_RESOURCES | {database_name} | ({"LedgerClusterInstance"} if database_name == "LedgerCluster"
                                                     else set()) | ({"LedgerLabClientsIngress"} if cidr else set())
    assert {n for n in resources if n.startswith("Ledger")} == expected
    database = resources[database_name]
    props = database["Properties"]
    assert database["DeletionPolicy"] == "Snapshot" and props["DeletionProtection"] is True
    assert props["StorageEncrypted"] is True and props["EnableIAMDatabaseAuthentication"] is True
    assert props["MasterUsername"] == "cyto"
    # The password: generated by Secrets Manager, resolved by CloudFormation, never a parameter or literal.
    password = "{{resolve:secretsmanager:${LedgerSecret}:SecretString:password}}"
    assert props["MasterUserPassword"] == {"Fn::Sub": password}
    generated = resources["LedgerSecret"]["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "password" and generated["PasswordLength"] >= 32
    assert json.loads(generated["SecretStringTemplate"]) == {"username": "cyto"}
    if ledger == "aurora-serverless-v2":
        assert props["Engine"] == "aurora-postgresql"
        assert props["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5,
                                                             "MaxCapacity": {"Ref": "LedgerMaxCapacity"}}
        instance = resources["LedgerClusterInstance"]["Properties"]
        assert instance["DBInstanceClass"] == "db.serverless" and instance["PubliclyAccessible"] is False
    else:
        assert props["Engine"] == "postgres" and props["PubliclyAccessible"] is False
        assert props["DBInstanceClass"] == {"Ref": "LedgerInstanceClass"}
    # Only the bot's security group, and the lab's VPN range when given, reach port 5432.
    ingress = resources["LedgerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress == [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                        "SourceSecurityGroupId": {"Ref": "BotSecurityGroup"},
                        "Description": "PostgreSQL from the bot task"}]
    if cidr:
        extra = resources["LedgerLabClientsIngress"]["Properties"]
        assert (extra["CidrIp"], extra["FromPort"], extra["ToPort"]) == ({"Ref": "LedgerClientCidr"}, 5432, 5432)
    # The bot's run database is the ledger, its password injected by ECS from the secret.
    container = resources["BotTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    url, variables = env["CYTO_DB"]["Fn::Sub"]
    assert url == "postgresql://cyto@${Host}:${Port}/cyto?sslmode=require"
    assert variables["Host"] == {"Fn::GetAtt": [database_name, "Endpoint.Address"]}
    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    assert secrets["PGPASSWORD"] == {"Fn::Sub": "${LedgerSecret}:password::"}
    statements = resources["BotExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert statements[-1] == {"Sid": "ReadLedgerPassword", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                              "Resource": {"Ref": "LedgerSecret"}}


def settings_variables() -> set[str]:
    """Every environment variable name bot/settings.py reads."""
    source = (ROOT / "bot" / "settings.py").read_text()
    return set(re.findall(r'get\("([A-Z_]+)"', source))


@pytest.mark.parametrize("ledger", LEDGERS)
def test_bot_environment_uses_exactly_the_names_settings_reads(ledger: str) -> None:
    resources = decided(LedgerEngine=ledger)["Resources"]
    container = resources["BotTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    secrets = {s["Name"] for s in container["Secrets"]}
    libpq = {"PGPASSWORD"}  # read by libpq (psycopg), not by bot/settings.py
    cyto_names = {n for n in env if not n.startswith("AWS_")}
    assert cyto_names | (secrets - libpq) <= settings_variables(), (cyto_names | secrets) - settings_variables()
    assert {"CYTO_STORE", "CYTO_EXECUTOR", "CYTO_DB", "CYTO_BATCH_JOB_QUEUE", "CYTO_BATCH_JOB_DEFINITION",
            "CYTO_LOG_GROUP"} <= set(env)
    assert env["CYTO_EXECUTOR"] == "batch"
    if ledger == "sqlite":
        assert secrets == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"} and env["CYTO_DB"] == "/data/runs.sqlite"
    else:
        assert secrets == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "PGPASSWORD"}
        assert env["CYTO_DB"]["Fn::Sub"][0].startswith("postgresql://cyto@")  # no password in the URL
    # The names the bot is given are the names the stack creates and outputs.
    assert env["CYTO_BATCH_JOB_QUEUE"] == R["JobQueue"]["Properties"]["JobQueueName"]
    assert env["CYTO_BATCH_JOB_DEFINITION"] == R["JobDefinition"]["Properties"]["JobDefinitionName"]
    assert env["CYTO_BATCH_JOB_QUEUE"] == T["Outputs"]["JobQueue"]["Value"]
    assert env["CYTO_BATCH_JOB_DEFINITION"] == T["Outputs"]["JobDefinition"]["Value"]


# -- in moto --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ledger", "expected"), [
    ("sqlite", ["BucketPolicy"]),
    ("rds-postgres", ["BucketPolicy", "LedgerSecret", "LedgerSecretAttachment"]),
    ("aurora-serverless-v2", ["BucketPolicy", "LedgerCluster", "LedgerClusterInstance", "LedgerSecret",
                              "LedgerSecretAttachment"]),
])
def test_only_what_moto_cannot_create_is_stripped(ledger: str, expected: list[str]) -> None:
    _, dropped = without_resources_moto_cannot_create(decided(LedgerEngine=ledger))
    assert dropped == expected


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


@pytest.mark.parametrize("ledger", POSTGRES)
def test_stack_with_a_postgresql_ledger_creates_in_moto(aws: None, ledger: str) -> None:
    outputs = create_stack(LedgerEngine=ledger, BotDesiredCount="2", LedgerClientCidr="10.8.0.0/16")
    ecs = boto3.client("ecs", region_name=REGION)
    service = ecs.describe_services(cluster=outputs["BotCluster"], services=[outputs["BotService"]])["services"][0]
    assert service["desiredCount"] == 2
    container = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"][
        "containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["CYTO_DB"] == f"postgresql://cyto@{outputs['LedgerEndpoint']}:5432/cyto?sslmode=require"
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]}["PGPASSWORD"] == \
        f"{outputs['LedgerSecretArn']}:password::"
    ec2 = boto3.client("ec2", region_name=REGION)
    group = ec2.describe_security_groups(GroupIds=[outputs["LedgerSecurityGroup"]])["SecurityGroups"][0]
    sources = sorted([p["UserIdGroupPairs"][0]["GroupId"] for p in group["IpPermissions"] if p["UserIdGroupPairs"]]
                     + [r["CidrIp"] for p in group["IpPermissions"] for r in p["IpRanges"]])
    bot_group = next(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
                     if g["Description"].startswith("cyto-bot task"))
    assert sources == sorted([bot_group, "10.8.0.0/16"])
    assert {p["FromPort"] for p in group["IpPermissions"]} == {5432}
    if ledger == "rds-postgres":
        instance = boto3.client("rds", region_name=REGION).describe_db_instances()["DBInstances"][0]
        assert instance["Engine"] == "postgres" and instance["Endpoint"]["Address"] == outputs["LedgerEndpoint"]


def test_more_than_one_bot_on_sqlite_is_refused_before_anything_is_created(aws: None) -> None:
    with pytest.raises(ParameterError, match="needs a PostgreSQL ledger"):
        create_stack(BotDesiredCount="2")
    assert boto3.client("cloudformation", region_name=REGION).list_stacks()["StackSummaries"] == []
