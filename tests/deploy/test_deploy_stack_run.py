"""The template and the code agree: create the stack in moto, configure the engine from the stack's
outputs only, run a batch through the real S3 store and Batch executor, and check that every AWS call
the engine made is allowed by the bot role's policy from the same stack.

moto runs Batch without Docker here (simple mode): jobs "succeed" without running a container, so this
proves names, outputs and permissions line up, not what the jobs compute (tests/aws does that)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.api import Cyto
from bot.demo import write_demo_batch
from bot.settings import Settings
from bot.states import JobState
from tests.deploy.cfn_moto import REGION, role_policies
from tests.deploy.iam_eval import evaluate

ACCOUNT = "123456789012"


class CallRecorder:
    """Every AWS operation the engine performs, as (IAM action, resource ARN, operation)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.unmapped: list[str] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        operation = model.name
        for action, resource in self.map(service, operation, params):
            self.requests.append((action, resource, f"{service}.{operation}"))

    def map(self, service: str, op: str, p: dict[str, Any]) -> list[tuple[str, str]]:
        batch = f"arn:aws:batch:{REGION}:{ACCOUNT}"
        if service == "batch":
            if op in ("DescribeJobs", "ListJobs", "DescribeJobQueues", "DescribeJobDefinitions",
                      "DescribeComputeEnvironments"):
                return [(f"batch:{op}", "*")]
            if op == "SubmitJob":
                queue = p["jobQueue"] if p["jobQueue"].startswith("arn:") else f"{batch}:job-queue/{p['jobQueue']}"
                definition = p["jobDefinition"]
                if not definition.startswith("arn:"):
                    # Batch authorises the revision it resolves the name to ("name" = newest ACTIVE).
                    name = definition.split(":")[0]
                    revisions = boto3.client("batch", region_name=REGION).describe_job_definitions(
                        jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
                    definition = max(revisions, key=lambda d: d["revision"])["jobDefinitionArn"]
                result = [("batch:SubmitJob", queue), ("batch:SubmitJob", definition)]
                if p.get("tags"):
                    result.append(("batch:TagResource", f"{batch}:job/new-job-id"))
                return result
            if op == "RegisterJobDefinition":
                return [("batch:RegisterJobDefinition", f"{batch}:job-definition/{p['jobDefinitionName']}")]
            if op in ("CancelJob", "TerminateJob"):
                return [(f"batch:{op}", f"{batch}:job/{p['jobId']}")]
        if service == "s3":
            bucket = f"arn:aws:s3:::{p['Bucket']}"
            if op in ("ListObjectsV2", "ListObjects", "HeadBucket"):
                return [("s3:ListBucket", bucket)]
            if op in ("GetObject", "HeadObject"):
                return [("s3:GetObject", f"{bucket}/{p['Key']}")]
            if op == "PutObject":
                return [("s3:PutObject", f"{bucket}/{p['Key']}")]
        if service == "logs":
            group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{p['logGroupName']}"
            if op == "GetLogEvents":
                return [("logs:GetLogEvents", f"{group}:log-stream:{p['logStreamName']}")]
            if op in ("FilterLogEvents", "DescribeLogStreams"):
                return [(f"logs:{op}", group)]
        self.unmapped.append(f"{service}.{op}")
        return []


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    """Records on every boto3 client created during the test (the executor keeps a reference to
    bot.aws.client from import time, so patching boto3's Session.client is the one sure place)."""
    recorder = CallRecorder()
    real_client = boto3.session.Session.client

    def recording_client(self: boto3.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = real_client(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", recorder)
        return client

    monkeypatch.setattr(boto3.session.Session, "client", recording_client)
    return recorder


def test_engine_runs_a_batch_using_only_the_stack_outputs(stack: dict[str, str], recorder: CallRecorder,
                                                          tmp_path: Path) -> None:
    # What a person does after the deploy: upload a batch (with their own credentials).
    settings = Settings.from_env({
        "CYTO_STORE": stack["Store"],
        "CYTO_EXECUTOR": "batch",
        "CYTO_BATCH_JOB_QUEUE": stack["JobQueue"],
        "CYTO_BATCH_JOB_DEFINITION": stack["JobDefinition"],
        "CYTO_LOG_GROUP": stack["LogGroup"],
        "CYTO_DB": str(tmp_path / "runs.sqlite"),
    })
    uploader = Cyto(settings)
    ref, analyses = write_demo_batch(uploader.store, date="2018-12-05")
    recorder.requests.clear()
    recorder.unmapped.clear()

    # What the bot does, with the stack's names and nothing else.
    cyto = Cyto(settings)
    run = cyto.run(ref.date, ref.batch, pipeline="wordcount", requested_by="U0001", retries=0)
    summary = cyto.wait(run.id, interval=0.05)
    requests, unmapped = list(recorder.requests), list(recorder.unmapped)  # before the test's own calls
    assert summary.total == len(analyses)
    assert summary.count(JobState.SUCCEEDED) == len(analyses), summary

    batch = boto3.client("batch", region_name=REGION)
    job_ids = [j["jobId"] for j in batch.list_jobs(jobQueue=stack["JobQueue"], jobStatus="SUCCEEDED")[
        "jobSummaryList"]]
    jobs = batch.describe_jobs(jobs=job_ids)["jobs"]
    assert len(jobs) == len(analyses)
    assert {j["jobQueue"] for j in jobs} == {stack["JobQueueArn"]}
    assert {j["jobDefinition"] for j in jobs} == {stack["JobDefinitionArn"]}
    environment = {e["name"]: e["value"] for e in jobs[0]["container"]["environment"]}
    assert environment["CYTO_INPUT_URI"].startswith(f"s3://{stack['Bucket']}/Input/2018-12-05/demo/")

    # Every call the engine made is one the bot role allows.
    assert unmapped == []
    assert {op for _, _, op in requests} >= {"batch.SubmitJob", "batch.DescribeJobs", "s3.ListObjectsV2"}
    policies = role_policies("cyto-bot", "BotRole")
    denied = [(a, r, op) for a, r, op in requests if not evaluate(policies, a, r).allowed]
    assert denied == []


def test_storage_definitions_fit_the_bot_policy(aws: None, recorder: CallRecorder, tmp_path: Path) -> None:
    """--storage on Fargate registers NAME-storage-<N>gib; the bot role may register and submit it."""
    from tests.deploy.cfn_moto import create_stack

    stack = create_stack(ComputeType="FARGATE")
    # moto drops PlatformCapabilities from CloudFormation and keeps Number parameters as ints; give the
    # stack's job definition what real CloudFormation registers (FARGATE, string resource values).
    from moto.batch.models import batch_backends

    for definition in batch_backends[ACCOUNT][REGION]._job_definitions.values():
        definition.platform_capabilities = ["FARGATE"]
        for requirement in definition.container_properties["resourceRequirements"]:
            requirement["value"] = str(requirement["value"])
    settings = Settings.from_env({
        "CYTO_STORE": stack["Store"], "CYTO_EXECUTOR": "batch", "CYTO_BATCH_JOB_QUEUE": stack["JobQueue"],
        "CYTO_BATCH_JOB_DEFINITION": stack["JobDefinition"], "CYTO_LOG_GROUP": stack["LogGroup"],
        "CYTO_DB": str(tmp_path / "runs.sqlite"),
    })
    ref, analyses = write_demo_batch(Cyto(settings).store, date="2018-12-05")
    recorder.requests.clear()
    recorder.unmapped.clear()
    cyto = Cyto(settings)
    run = cyto.run(ref.date, ref.batch, pipeline="wordcount", requested_by="U0001", retries=0, storage_gib=50)
    summary = cyto.wait(run.id, interval=0.05)
    requests, unmapped = list(recorder.requests), list(recorder.unmapped)  # before the test's own calls
    assert summary.count(JobState.SUCCEEDED) == len(analyses)
    registered = [r for a, r, _ in requests if a == "batch:RegisterJobDefinition"]
    # (a set: concurrent first submissions may each register it; harmless, reported to the executor's owner)
    assert set(registered) == {f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/cyto-bot-job-storage-50gib"}
    policies = role_policies("cyto-bot", "BotRole")
    denied = [(a, r, op) for a, r, op in requests if not evaluate(policies, a, r).allowed]
    assert unmapped == [] and denied == []
