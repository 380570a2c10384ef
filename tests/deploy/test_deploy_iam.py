"""What the stack's roles must NOT be able to do, evaluated on the policy documents moto stored when it
created the stack (so the template's intrinsics are resolved to real ARNs), for each run database:
SQLite on EFS, Aurora Serverless v2 or RDS PostgreSQL. moto does not enforce IAM; tests.deploy.iam_eval does the
evaluation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from moto import mock_aws

from tests.deploy.cfn_moto import REGION, create_stack, load_template, role_policies
from tests.deploy.iam_eval import Decision, UnsupportedPolicy, allowed_actions, evaluate

ACCOUNT = "123456789012"
STACK = "cyto-bot"
BUCKET = "arn:aws:s3:::cyto-lab-test"
BATCH = f"arn:aws:batch:{REGION}:{ACCOUNT}"
LOGS = f"arn:aws:logs:{REGION}:{ACCOUNT}"


@pytest.fixture(scope="module", params=["sqlite", "aurora-serverless-v2", "rds-postgres"])
def ledger(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def stack_outputs_and_policies(ledger: str) -> Iterator[tuple[dict[str, str], dict[str, list[dict[str, Any]]]]]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
           "AWS_DEFAULT_REGION": REGION}
    with mock.patch.dict(os.environ, env), mock_aws():
        os.environ.pop("AWS_ENDPOINT_URL", None)
        outputs = create_stack(STACK, LedgerEngine=ledger)
        yield outputs, {role: role_policies(STACK, role) for role in
                        ("JobRole", "JobExecutionRole", "BotRole", "BotExecutionRole")}


@pytest.fixture(scope="module")
def policies(stack_outputs_and_policies: tuple[dict[str, str], dict[str, list[dict[str, Any]]]]
             ) -> dict[str, list[dict[str, Any]]]:
    return stack_outputs_and_policies[1]


def decide(docs: list[dict[str, Any]], action: str, resource: str, **context: str) -> Decision:
    return evaluate(docs, action, resource, context).decision


ALLOW, DENY = Decision.ALLOW, Decision.IMPLICIT_DENY


# -- the job role -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("action", "resource", "context", "expected"), [
    ("s3:GetObject", f"{BUCKET}/Input/2018-12-05/b7/A01/a.fcs", {}, ALLOW),
    ("s3:ListBucket", BUCKET, {"s3:prefix": "Input/2018-12-05/b7/A01/"}, ALLOW),
    ("s3:PutObject", f"{BUCKET}/Output/2018-12-05/b7/A01/stats.csv", {}, ALLOW),
    ("s3:PutObject", f"{BUCKET}/Logs/2018-12-05/b7/A01/3fa2c1/attempt-1.log", {}, ALLOW),
    # a job replaces its Output folder whole: it lists it and removes what an earlier run left
    ("s3:ListBucket", BUCKET, {"s3:prefix": "Output/2018-12-05/b7/A01/"}, ALLOW),
    ("s3:DeleteObject", f"{BUCKET}/Output/2018-12-05/b7/A01/stale.png", {}, ALLOW),
    # must deny:
    ("s3:PutObject", f"{BUCKET}/Input/2018-12-05/b7/A01/a.fcs", {}, DENY),
    ("s3:DeleteObject", f"{BUCKET}/Input/2018-12-05/b7/A01/a.fcs", {}, DENY),
    ("s3:DeleteObject", f"{BUCKET}/Logs/2018-12-05/b7/A01/3fa2c1/attempt-1.log", {}, DENY),
    ("s3:GetObject", f"{BUCKET}/Output/2018-12-05/b7/A01/stats.csv", {}, DENY),
    ("s3:ListBucket", BUCKET, {"s3:prefix": "Logs/"}, DENY),
    ("s3:ListBucket", BUCKET, {"s3:prefix": ""}, DENY),
    ("s3:ListBucket", BUCKET, {}, DENY),
    ("s3:PutObject", f"{BUCKET}/params.json", {}, DENY),
    ("s3:GetObject", "arn:aws:s3:::another-bucket/Input/x", {}, DENY),
    ("s3:PutBucketPolicy", BUCKET, {}, DENY),
    ("s3:DeleteBucket", BUCKET, {}, DENY),
    ("batch:SubmitJob", f"{BATCH}:job-queue/{STACK}-queue", {}, DENY),
    ("logs:GetLogEvents", f"{LOGS}:log-group:/aws/batch/{STACK}:log-stream:x", {}, DENY),
    ("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cyto-bot/slack-AbCdEf",
     {}, DENY),
])
def test_job_role(policies: dict[str, list[dict[str, Any]]], action: str, resource: str,
                  context: dict[str, str], expected: Decision) -> None:
    assert decide(policies["JobRole"], action, resource, **context) is expected


def test_job_role_grants_nothing_but_s3(policies: dict[str, list[dict[str, Any]]]) -> None:
    assert allowed_actions(policies["JobRole"]) == {"s3:listbucket", "s3:getobject", "s3:putobject",
                                                    "s3:abortmultipartupload", "s3:deleteobject"}


# -- the bot role -------------------------------------------------------------------------------------
QUEUE = f"{BATCH}:job-queue/{STACK}-queue"
DEFINITION = f"{BATCH}:job-definition/{STACK}-job:1"
STORAGE_DEFINITION = f"{BATCH}:job-definition/{STACK}-job-storage-50gib:1"


@pytest.mark.parametrize(("action", "resource", "expected"), [
    ("batch:SubmitJob", QUEUE, ALLOW),
    ("batch:SubmitJob", DEFINITION, ALLOW),
    ("batch:SubmitJob", f"{BATCH}:job-definition/{STACK}-job:17", ALLOW),
    ("batch:SubmitJob", STORAGE_DEFINITION, ALLOW),  # bot/executors/batch.py derived_definition_name
    ("batch:RegisterJobDefinition", f"{BATCH}:job-definition/{STACK}-job-storage-50gib", ALLOW),
    ("batch:DescribeJobs", "*", ALLOW),
    ("batch:ListJobs", "*", ALLOW),
    ("batch:CancelJob", f"{BATCH}:job/0123-abcd", ALLOW),
    ("batch:TerminateJob", f"{BATCH}:job/0123-abcd", ALLOW),
    ("s3:ListBucket", BUCKET, ALLOW),
    ("s3:GetObject", f"{BUCKET}/Output/2018-12-05/b7/A01/result.json", ALLOW),
    ("s3:GetObject", f"{BUCKET}/Logs/2018-12-05/b7/A01/attempt-1.log", ALLOW),
    ("logs:GetLogEvents", f"{LOGS}:log-group:/aws/batch/{STACK}:log-stream:{STACK}-job/default/abc", ALLOW),
    ("logs:DescribeLogStreams", f"{LOGS}:log-group:/aws/batch/{STACK}", ALLOW),
    # must deny:
    ("batch:SubmitJob", f"{BATCH}:job-queue/someone-elses-queue", DENY),
    ("batch:SubmitJob", f"{BATCH}:job-queue/{STACK}-queue-2", DENY),
    ("batch:SubmitJob", f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/{STACK}-queue", DENY),
    ("batch:SubmitJob", f"{BATCH}:job-definition/admin-shell:1", DENY),
    ("batch:SubmitJob", f"{BATCH}:job-definition/{STACK}-jobber:1", DENY),
    ("batch:RegisterJobDefinition", f"{BATCH}:job-definition/{STACK}-job", DENY),
    ("batch:RegisterJobDefinition", f"{BATCH}:job-definition/admin-shell", DENY),
    ("batch:DeregisterJobDefinition", DEFINITION, DENY),
    ("batch:UpdateJobQueue", QUEUE, DENY),
    ("batch:DeleteJobQueue", QUEUE, DENY),
    ("batch:CreateComputeEnvironment", f"{BATCH}:compute-environment/x", DENY),
    ("batch:UpdateComputeEnvironment", f"{BATCH}:compute-environment/{STACK}-SPOT", DENY),
    ("s3:DeleteBucket", BUCKET, DENY),
    ("s3:PutBucketPolicy", BUCKET, DENY),
    ("s3:DeleteObject", f"{BUCKET}/Input/2018-12-05/b7/A01/a.fcs", DENY),
    ("s3:PutObject", f"{BUCKET}/Input/2018-12-05/b7/A01/a.fcs", DENY),  # see deploy/README.md: split-fasta
    ("s3:PutObject", f"{BUCKET}/Output/2018-12-05/b7/A01/result.json", DENY),
    ("s3:GetObject", "arn:aws:s3:::another-bucket/secret.txt", DENY),
    ("logs:GetLogEvents", f"{LOGS}:log-group:/aws/lambda/payroll:log-stream:x", DENY),
    ("logs:DeleteLogGroup", f"{LOGS}:log-group:/aws/batch/{STACK}", DENY),
    ("iam:CreateRole", "*", DENY),
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Admin", DENY),
    ("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cyto-bot/slack-AbCdEf",
     DENY),  # the task role never sees the secret: ECS injects it with the execution role
    ("ecs:RunTask", "*", DENY),
    ("ec2:RunInstances", "*", DENY),
])
def test_bot_role(policies: dict[str, list[dict[str, Any]]], action: str, resource: str, expected: Decision) -> None:
    assert decide(policies["BotRole"], action, resource) is expected


def test_bot_may_pass_only_the_job_roles_to_batch(policies: dict[str, list[dict[str, Any]]]) -> None:
    bot = policies["BotRole"]
    passes = [s for s in bot[0]["Statement"] if s["Action"] == "iam:PassRole"]
    roles = passes[0]["Resource"]
    assert len(roles) == 2 and all(":role/cyto-bot-Job" in r for r in roles)
    for role in roles:
        assert decide(bot, "iam:PassRole", role, **{"iam:PassedToService": "batch.amazonaws.com"}) is ALLOW
        assert decide(bot, "iam:PassRole", role, **{"iam:PassedToService": "ec2.amazonaws.com"}) is DENY


def test_bot_role_lists_exactly_these_actions(policies: dict[str, list[dict[str, Any]]]) -> None:
    assert allowed_actions(policies["BotRole"]) == {
        "batch:submitjob", "batch:registerjobdefinition", "batch:tagresource", "batch:canceljob",
        "batch:terminatejob", "batch:describejobs", "batch:listjobs", "batch:describejobqueues",
        "batch:describecomputeenvironments", "batch:describejobdefinitions", "iam:passrole", "s3:listbucket",
        "s3:getobject", "logs:getlogevents", "logs:filterlogevents", "logs:describelogstreams",
        "elasticfilesystem:clientmount", "elasticfilesystem:clientwrite",
    }


# -- execution roles ------------------------------------------------------------------------------
def test_execution_roles(policies: dict[str, list[dict[str, Any]]]) -> None:
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cyto-bot/slack-AbCdEf"
    assert decide(policies["BotExecutionRole"], "secretsmanager:GetSecretValue", secret) is ALLOW
    assert decide(policies["BotExecutionRole"], "secretsmanager:GetSecretValue",
                  f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-XyZ123") is DENY
    assert decide(policies["JobExecutionRole"], "secretsmanager:GetSecretValue", secret) is DENY
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{STACK}"
    for role in ("JobExecutionRole", "BotExecutionRole"):
        assert decide(policies[role], "ecr:BatchGetImage", repo) is ALLOW
        assert decide(policies[role], "ecr:BatchGetImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/other") is DENY
        assert decide(policies[role], "ecr:PutImage", repo) is DENY
        assert decide(policies[role], "s3:GetObject", f"{BUCKET}/Input/x") is DENY
    stream = f"{LOGS}:log-group:/aws/batch/{STACK}:log-stream:{STACK}-job/default/abc"
    assert decide(policies["JobExecutionRole"], "logs:PutLogEvents", stream) is ALLOW
    assert decide(policies["JobExecutionRole"], "logs:PutLogEvents", f"{LOGS}:log-group:/other:log-stream:x") is DENY


LEDGER_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{STACK}/ledger-StAnD1"


def test_only_the_bot_execution_role_reads_the_ledger_password(
        ledger: str, stack_outputs_and_policies: tuple[dict[str, str], dict[str, list[dict[str, Any]]]]) -> None:
    outputs, policies = stack_outputs_and_policies
    if ledger == "sqlite":
        assert "LedgerSecretArn" not in outputs
    else:
        assert outputs["LedgerSecretArn"] == LEDGER_SECRET
    # ECS reads the secret with the execution role to set PGPASSWORD; the task itself (BotRole), the
    # jobs and their execution role never can. With SQLite there is no ledger secret to read.
    expected = DENY if ledger == "sqlite" else ALLOW
    assert decide(policies["BotExecutionRole"], "secretsmanager:GetSecretValue", LEDGER_SECRET) is expected
    for role in ("BotRole", "JobRole", "JobExecutionRole"):
        assert decide(policies[role], "secretsmanager:GetSecretValue", LEDGER_SECRET) is DENY
    for action in ("secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret", "secretsmanager:DeleteSecret"):
        assert decide(policies["BotExecutionRole"], action, LEDGER_SECRET) is DENY
    # The bot reaches the database with the password, not IAM: no rds-db:connect, no RDS control plane.
    for role in ("BotRole", "BotExecutionRole"):
        assert decide(policies[role], "rds-db:connect", f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:db-X/cyto") is DENY
        assert decide(policies[role], "rds:DeleteDBInstance", "*") is DENY


# -- the bucket policy (moto cannot create AWS::S3::BucketPolicy; evaluated from the template) ----------
def test_bucket_policy_denies_plain_http() -> None:
    statement = load_template()["Resources"]["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    # Resolve the two intrinsics of this one statement by hand: Bucket.Arn and "${Bucket.Arn}/*".
    resolved = {**statement, "Resource": [BUCKET, f"{BUCKET}/*"]}
    doc = {"Version": "2012-10-17", "Statement": [resolved]}
    for action, resource in (("s3:GetObject", f"{BUCKET}/Input/x"), ("s3:ListBucket", BUCKET)):
        assert evaluate([doc], action, resource, {"aws:SecureTransport": "false"}).decision is Decision.EXPLICIT_DENY
        assert evaluate([doc], action, resource, {"aws:SecureTransport": "true"}).decision is Decision.IMPLICIT_DENY


# -- the evaluator itself ----------------------------------------------------------------------------
def test_evaluator_rules() -> None:
    allow = {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/Input/*"}
    deny = {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/Input/secret*"}
    doc = {"Statement": [allow, deny]}
    assert evaluate([doc], "S3:GETOBJECT", "arn:aws:s3:::b/Input/x").allowed  # actions are case-insensitive
    assert not evaluate([doc], "s3:GetObject", "arn:aws:s3:::b/input/x").allowed  # resources are not
    assert evaluate([doc], "s3:GetObject", "arn:aws:s3:::b/Input/secret.txt").decision is Decision.EXPLICIT_DENY
    with pytest.raises(UnsupportedPolicy):
        evaluate([{"Statement": [{**allow, "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}],
                 "s3:GetObject", "arn:aws:s3:::b/Input/x")
