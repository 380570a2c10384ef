"""The Batch executor against moto's Batch, S3 and CloudWatch Logs over HTTP (real boto3 calls)."""

from __future__ import annotations

import time

import boto3
import pytest

from bot.executors import ExecutorError, JobSpec, JobStatus, Resources, job_name
from bot.executors.batch import BatchExecutor
from bot.settings import Settings
from bot.states import JobState
from container.contract import JobEnvironment
from tests.aws.batch_setup import BatchSetup, make_batch
from tests.aws.batch_shim import EntrypointShim
from tests.aws.conftest import Aws
from tests.timeouts import seconds

pytest_plugins = ["tests.aws.conftest"]


def spec(n: int, resources: Resources | None = None, run: str = "r1") -> JobSpec:
    analysis = f"A{n:04d}"
    env = JobEnvironment(run_id=run, attempt=1, date="2024-01-02", batch="b1", analysis=analysis,
                         pipeline="wordcount", input_uri=f"s3://lab-bucket/Input/2024-01-02/b1/{analysis}/",
                         output_uri=f"s3://lab-bucket/Output/2024-01-02/b1/{analysis}/",
                         logs_uri=f"s3://lab-bucket/Logs/2024-01-02/b1/{analysis}/")
    tags = {"cyto:run": run, "cyto:analysis": analysis}
    return JobSpec(job_name(run, analysis, 1), env, resources or Resources(), tags)


def executor(setup: BatchSetup, **kwargs: object) -> BatchExecutor:
    return BatchExecutor(setup.queue, kwargs.pop("definition", setup.definition), **kwargs)  # type: ignore[arg-type]


def test_from_settings() -> None:
    settings = Settings(store="s3://lab-bucket", executor="batch", batch_job_queue="q", batch_job_definition="d",
                        log_group="/cyto/jobs")
    made = BatchExecutor.from_settings(settings)
    assert (made.job_queue, made.job_definition, made.logs.group, made.name) == ("q", "d", "/cyto/jobs", "batch")
    with pytest.raises(ExecutorError, match="CYTO_BATCH_JOB_QUEUE"):
        BatchExecutor.from_settings(Settings())


def test_submit_find_describe(simple_batch: Aws, batch_setup: BatchSetup) -> None:
    ex = executor(batch_setup)
    job_id = ex.submit(spec(1))
    assert ex.find(spec(1).name) == job_id
    assert ex.find(spec(2).name) is None
    status = ex.describe([job_id])[job_id]
    assert status.state == JobState.SUCCEEDED and status.log_ref and status.started_at
    job = boto3.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]
    env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert env["CYTO_ANALYSIS"] == "A0001" and env["CYTO_OUTPUT_URI"].startswith("s3://lab-bucket/Output/")
    assert job["tags"]["cyto:analysis"] == "A0001"
    assert job["timeout"] == {"attemptDurationSeconds": 3600}


def test_describe_chunks_of_100(simple_batch: Aws, batch_setup: BatchSetup) -> None:
    ex = executor(batch_setup)
    ids = [ex.submit(spec(n)) for n in range(250)]
    before = simple_batch.calls("batch:describejobs")
    statuses = ex.describe([*ids, "no-such-job"])
    assert simple_batch.calls("batch:describejobs") - before == 3
    assert len(statuses) == 250 and "no-such-job" not in statuses


def test_failed_jobs_in_simple_mode(simple_batch: Aws, batch_setup: BatchSetup,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    ex = executor(batch_setup)
    job_id = ex.submit(spec(1))
    assert ex.describe([job_id])[job_id].state == JobState.FAILED


def test_missing_queue_or_definition_submits_nothing(simple_batch: Aws, batch_setup: BatchSetup) -> None:
    with pytest.raises(ExecutorError, match=r"job queue 'nope' does not exist.*CYTO_BATCH_JOB_QUEUE"):
        BatchExecutor("nope", batch_setup.definition).submit(spec(1))
    wrong = BatchExecutor(batch_setup.queue, "no-such-definition")
    for _ in range(2):  # the answer is remembered: the second submission asks AWS nothing
        with pytest.raises(ExecutorError, match=r"job definition 'no-such-definition'.*CYTO_BATCH_JOB_DEFINITION"):
            wrong.submit(spec(1))
    assert simple_batch.calls("batch:describejobdefinitions") == 1
    assert simple_batch.calls("batch:submitjob") == 0


@pytest.mark.parametrize(("state", "status", "usable"), [
    ("ENABLED", "VALID", True), ("ENABLED", "UPDATING", True), ("ENABLED", "INVALID", False),
    ("DISABLED", "VALID", False)])
def test_the_doctor_judges_a_queue_by_the_rule_the_executor_submits_by(
        simple_batch: Aws, batch_setup: BatchSetup, state: str, status: str, usable: bool) -> None:
    """An UPDATING queue takes submissions, so the doctor shows it green; INVALID or DISABLED is red for both."""
    from moto.batch.models import batch_backends

    from bot.doctor import check_batch

    queue = batch_backends["123456789012"]["us-east-1"].get_job_queue(batch_setup.queue)
    queue.state, queue.status = state, status
    if usable:
        executor(batch_setup).check()
    else:
        with pytest.raises(ExecutorError, match=f"is {state}/{status}"):
            executor(batch_setup).check()
    settings = Settings(executor="batch", batch_job_queue=batch_setup.queue,
                        batch_job_definition=batch_setup.definition)
    line = next(c for c in check_batch(settings, lambda service: boto3.client(service)) if c.name == "Batch job queue")
    assert line.ok is usable and f"is {state}/{status}" in line.detail, line.line()


def test_no_credentials(simple_batch: Aws, batch_setup: BatchSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ExecutorError, match=r"CYTO_BATCH_JOB_QUEUE.*no AWS credentials found: set AWS_PROFILE"):
        executor(batch_setup).check()


def test_storage_definitions_registered_once_and_reused(simple_batch: Aws, batch_setup: BatchSetup) -> None:
    ex = executor(batch_setup, definition=batch_setup.fargate_definition)
    assert ex.definition_for(20) == batch_setup.fargate_definition
    arn = ex.definition_for(50)
    assert arn == ex.definition_for(50)
    assert executor(batch_setup, definition=batch_setup.fargate_definition).definition_for(50) == arn
    batch = boto3.client("batch")
    found = batch.describe_job_definitions(jobDefinitionName="cyto-fargate-job-storage-50gib")["jobDefinitions"]
    assert len(found) == 1 and found[0]["containerProperties"]["ephemeralStorage"] == {"sizeInGiB": 50}
    job_id = ex.submit(spec(1, Resources(storage_gib=50)))
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["jobDefinition"] == arn
    with pytest.raises(ExecutorError, match="launch template"):
        executor(batch_setup).definition_for(50)


def test_throttled_submissions_are_retried_not_lost(simple_batch: Aws, batch_setup: BatchSetup) -> None:
    ex = executor(batch_setup)
    ex.check()
    simple_batch.throttle("batch:submitjob", 3)
    ids = [ex.submit(spec(n)) for n in range(5)]
    assert simple_batch.middleware.throttled["batch:submitjob"] == 3
    assert simple_batch.calls("batch:submitjob") == 5 and len(set(ids)) == 5


def test_cancel_queued_and_terminate_running(aws: Aws, shim: EntrypointShim, batch_setup: BatchSetup) -> None:
    ex = executor(batch_setup)
    shim.hold.set()
    queued = ex.submit(spec(1))
    _wait(lambda: boto3.client("batch").describe_jobs(jobs=[queued])["jobs"][0]["status"] == "RUNNABLE")
    ex.cancel(queued, "cancelled by ana")
    assert aws.calls("batch:canceljob") == 1 and aws.calls("batch:terminatejob") == 0
    _wait(lambda: ex.describe([queued])[queued].state == JobState.CANCELLED)
    assert ex.describe([queued])[queued].reason == "cancelled by ana"


def test_logs_from_cloudwatch_follow_every_page(aws: Aws, batch_setup: BatchSetup) -> None:
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName="s/1")
    now = int(time.time() * 1000)
    for start in (0, 6000):
        events = [{"timestamp": now + i, "message": f"line {i}"} for i in range(start, start + 6000)]
        logs.put_log_events(logGroupName="/aws/batch/job", logStreamName="s/1", logEvents=events)
    ex = executor(batch_setup)
    text = ex.read_log(JobStatus("j", JobState.FAILED, log_ref="s/1"))
    assert text is not None and text.splitlines()[0] == "line 0" and text.splitlines()[-1] == "line 11999"
    assert aws.calls("logs:GetLogEvents") >= 2
    assert ex.read_log(JobStatus("j", JobState.FAILED, log_ref="s/missing")) is None
    assert ex.read_log(JobStatus("j", JobState.FAILED)) is None


def test_stuck_runnable_job_is_explained(aws: Aws, shim: EntrypointShim) -> None:
    batch_setup = make_batch(managed=True)
    shim.hold.set()
    ex = executor(batch_setup, stuck_after_s=0)
    job_id = ex.submit(spec(1, Resources(vcpus=32)))
    _wait(lambda: ex.describe([job_id])[job_id].reason is not None)
    assert "asks for 32 vCPUs but the compute environments of cyto-queue allow at most 16" in \
        ex.describe([job_id])[job_id].reason
    boto3.client("batch").update_compute_environment(computeEnvironment=batch_setup.compute_environment,
                                                     state="DISABLED")
    small = ex.submit(spec(2))
    _wait(lambda: boto3.client("batch").describe_jobs(jobs=[small])["jobs"][0]["status"] == "RUNNABLE")
    assert "cyto-ce is DISABLED" in (executor(batch_setup, stuck_after_s=0).describe([small])[small].reason or "")
    assert executor(batch_setup).describe([small])[small].reason is None  # not stuck long enough


def _wait(condition: object, timeout: float = seconds(10)) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
