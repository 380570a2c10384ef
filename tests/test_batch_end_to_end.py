"""End to end on the AWS engine: S3 store, Batch executor and CloudWatch Logs, all moto over HTTP,
with every Batch job running the real container entrypoint through the shim (tests/aws/batch_shim.py)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from bot.api import Cyto
from bot.cli import cli
from bot.settings import Settings
from bot.states import JobState, RunState
from tests.aws.batch_setup import BatchSetup, wordcount_batch
from tests.aws.batch_shim import EntrypointShim
from tests.aws.conftest import Aws
from tests.timeouts import seconds

pytest_plugins = ["tests.aws.conftest"]
DATE, BATCH = "2024-01-02", "b1"


def settings(setup: BatchSetup, tmp_path: Path, **overrides: str) -> Settings:
    values = {"store": f"s3://{setup.bucket}", "executor": "batch", "db": str(tmp_path / "runs.sqlite"),
              "batch_job_queue": setup.queue, "batch_job_definition": setup.definition, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


def outputs(bucket: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="Output/")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_run_fail_retry_with_the_python_api(aws: Aws, shim: EntrypointShim, batch_setup: BatchSetup,
                                            tmp_path: Path) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 5, broken=("A03",))
    cyto = Cyto(settings(batch_setup, tmp_path))
    run = cyto.run(DATE, BATCH, pipeline="wordcount", retries=1, requested_by="ana")
    summary = cyto.wait(run.id, interval=0.1, timeout=seconds(60))
    assert (summary.count(JobState.SUCCEEDED), summary.count(JobState.FAILED)) == (4, 1)
    assert [k for k in outputs(batch_setup.bucket) if k.endswith("wordcount.json")] == [
        f"Output/{DATE}/{BATCH}/{a}/wordcount.json" for a in ("A01", "A02", "A04", "A05")]
    job = cyto.db.job(run.id, "A03")
    attempts = cyto.db.attempts(job.id)
    # Bad input (exit 2) would fail the same way again: not retried automatically, whatever --retries says.
    assert [(a.state, a.exit_code) for a in attempts] == [(JobState.FAILED, 2)]
    assert all('names "missing.txt"' in a.reason and a.reason.endswith("(exit code 2)") for a in attempts)
    assert all(a.log_ref and a.log_ref.startswith("cyto-job/default/") for a in attempts)
    assert "not retried automatically" in (job.failure_rule or "")
    assert aws.calls("batch:submitjob") == 5
    tags = boto3.client("batch").describe_jobs(jobs=[attempts[0].executor_job_id])["jobs"][0]["tags"]
    assert tags["cyto:requested-by"] == "ana" and tags["cyto:analysis"] == "A03"

    excerpt = cyto.logs(run.id, "A03")
    assert excerpt.source == "batch" and excerpt.attempt == 1
    assert 'names "missing.txt", which is not in the analysis folder' in excerpt.excerpt.text
    assert excerpt.explanation is None  # the analysis failed on its own: no Batch words to add

    boto3.client("s3").put_object(Bucket=batch_setup.bucket, Key=f"Input/{DATE}/{BATCH}/A03/missing.txt",
                                  Body=b"found now\n")
    assert cyto.retry(run.id, "A03", by="ana") == ["A03"]
    summary = cyto.wait(run.id, interval=0.1, timeout=seconds(60))
    assert summary.count(JobState.SUCCEEDED) == 5 and summary.run.state == RunState.SUCCEEDED
    assert f"Output/{DATE}/{BATCH}/A03/wordcount.json" in outputs(batch_setup.bucket)
    assert aws.calls("batch:submitjob") == 6


def test_restart_mid_run_submits_nothing_twice(aws: Aws, shim: EntrypointShim, batch_setup: BatchSetup,
                                               tmp_path: Path) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 5)
    shim.hold.set()
    first = Cyto(settings(batch_setup, tmp_path))
    run = first.run(DATE, BATCH, pipeline="wordcount", retries=0)
    assert aws.calls("batch:submitjob") == 5
    # The first process "dies" after SubmitJob reached Batch but before two job ids were recorded:
    # their attempts keep the claim of a process on another host and no executor job id.
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.execute("""UPDATE attempts SET executor_job_id = NULL, claim_token = 'gone-host:1:dead', state = 'PENDING'
                      WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ? AND analysis IN ('A02', 'A04'))""",
                   (run.id,))
        db.execute("UPDATE jobs SET state = 'PENDING' WHERE run_id = ? AND analysis IN ('A02', 'A04')", (run.id,))
    second = Cyto(settings(batch_setup, tmp_path))
    second.poll()
    assert aws.calls("batch:listjobs") == 2  # looked up by their deterministic names ...
    assert aws.calls("batch:submitjob") == 5  # ... and found, so not submitted again
    shim.hold.clear()
    summary = second.wait(run.id, interval=0.1, timeout=seconds(60))
    assert summary.count(JobState.SUCCEEDED) == 5
    assert aws.calls("batch:submitjob") == 5 and len(shim.started) == 5


def test_cancel_drops_queued_jobs(aws: Aws, shim: EntrypointShim, batch_setup: BatchSetup, tmp_path: Path) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 3)
    shim.hold.set()
    cyto = Cyto(settings(batch_setup, tmp_path))
    run = cyto.run(DATE, BATCH, pipeline="wordcount")
    cyto.poll()
    assert cyto.cancel(run.id, by="ana")
    assert aws.calls("batch:canceljob") == 3
    summary = cyto.wait(run.id, interval=0.1, timeout=seconds(30))
    assert summary.run.state == RunState.CANCELLED and summary.count(JobState.CANCELLED) == 3
    assert shim.started == []


def test_throttled_endpoint_loses_nothing(simple_batch: Aws, batch_setup: BatchSetup, tmp_path: Path) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 12)
    simple_batch.throttle("batch:submitjob", 6)
    cyto = Cyto(settings(batch_setup, tmp_path))
    run = cyto.run(DATE, BATCH, pipeline="wordcount")
    summary = cyto.wait(run.id, interval=0.1, timeout=seconds(60))
    assert simple_batch.middleware.throttled["batch:submitjob"] == 6
    assert simple_batch.calls("batch:submitjob") == 12
    assert summary.count(JobState.SUCCEEDED) == 12


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("CYTO_STORE", "s3://no-such-bucket", "bucket 'no-such-bucket' does not exist (CYTO_STORE=s3://no-such-bucket)"),
    ("CYTO_STORE", "s3://Bad_Bucket", "not a valid S3 bucket name"),
    ("AWS_ACCESS_KEY_ID", None, "no AWS credentials found"),
])
def test_cli_bad_configuration_exits_2_and_submits_nothing(aws: Aws, batch_setup: BatchSetup, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, setting: str,
                                                           value: str | None, message: str) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 2)
    _cli_env(monkeypatch, batch_setup, tmp_path)
    if value is None:
        monkeypatch.delenv(setting)
    else:
        monkeypatch.setenv(setting, value)
    result = CliRunner().invoke(cli, ["run", DATE, BATCH, "--pipeline", "wordcount"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert aws.calls("batch:submitjob") == 0


def test_cli_wrong_queue_submits_nothing(aws: Aws, batch_setup: BatchSetup, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 2)
    _cli_env(monkeypatch, batch_setup, tmp_path)
    monkeypatch.setenv("CYTO_BATCH_JOB_QUEUE", "no-such-queue")
    result = CliRunner().invoke(cli, ["run", DATE, BATCH, "--pipeline", "wordcount", "--wait"])
    assert result.exit_code == 2, result.output
    assert "no-such-queue" in result.output and "CYTO_BATCH_JOB_QUEUE" in result.output
    assert aws.calls("batch:submitjob") == 0


def test_cli_run_logs_retry_cancel(aws: Aws, shim: EntrypointShim, batch_setup: BatchSetup, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 5, broken=("A02",))
    _cli_env(monkeypatch, batch_setup, tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["run", DATE, BATCH, "--pipeline", "wordcount", "--retries", "1", "--wait"])
    assert result.exit_code == 1, result.output
    run_id = re.search(r"run (\w+):", result.output).group(1)
    assert len([k for k in outputs(batch_setup.bucket) if k.endswith("wordcount.json")]) == 4
    logs = runner.invoke(cli, ["logs", run_id, "A02"])
    assert logs.exit_code == 0 and "attempt 1" in logs.output and 'names "missing.txt"' in logs.output
    boto3.client("s3").delete_object(Bucket=batch_setup.bucket, Key=f"Input/{DATE}/{BATCH}/A02/params.json")
    retried = runner.invoke(cli, ["retry", run_id, "A02", "--wait"])
    assert retried.exit_code == 0, retried.output
    assert aws.calls("batch:submitjob") == 6

    shim.hold.set()
    started = runner.invoke(cli, ["run", DATE, BATCH, "--pipeline", "wordcount"])
    second = re.search(r"run (\w+):", started.output).group(1)
    cancelled = runner.invoke(cli, ["cancel", second])
    assert cancelled.exit_code == 0 and "cancelling" in cancelled.output
    assert aws.calls("batch:canceljob") == 5


def _cli_env(monkeypatch: pytest.MonkeyPatch, setup: BatchSetup, tmp_path: Path) -> None:
    monkeypatch.setenv("CYTO_STORE", f"s3://{setup.bucket}")
    monkeypatch.setenv("CYTO_EXECUTOR", "batch")
    monkeypatch.setenv("CYTO_DB", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("CYTO_BATCH_JOB_QUEUE", setup.queue)
    monkeypatch.setenv("CYTO_BATCH_JOB_DEFINITION", setup.definition)
    monkeypatch.setenv("CYTO_POLL_SECONDS", "0.2")
