"""The Slack bot end to end on the AWS engine: signed requests over HTTP to the bot on loopback, the
Slack Web API stand-in, and the engine on `S3Store` + `BatchExecutor` against the moto server,
where every Batch job runs the real `python -m container.entrypoint` through the shim and its
output lands in moto's CloudWatch Logs (tests/aws/batch_shim.py).

The moto fixtures come from tests/aws/conftest.py as a plugin; the bot comes from this folder's
`start_bot`. Polls are driven by the test (`Served.drive`), never by a timer."""

from __future__ import annotations

import html
import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from slack_harness import SECRET, TOKEN, USER, Served, wait_for
from slack_stand_in import SlackStandIn
from test_bot_e2e import buttons, failure_replies, root_updates, start_run, thread_replies

from bot.executors.batch import BatchExecutor
from bot.settings import Settings
from bot.states import JobState, RunState
from bot.store.s3 import S3Store
from tests.aws.batch_setup import BatchSetup, wordcount_batch
from tests.aws.batch_shim import EntrypointShim
from tests.aws.conftest import Aws
from tests.timeouts import seconds

pytest_plugins = ["tests.aws.conftest"]
pytestmark = pytest.mark.slow

DATE, BATCH, BROKEN = "2018-12-05", "batch-7", "A03"


@pytest.fixture
def aws_settings(aws: Aws, batch_setup: BatchSetup, stand_in: SlackStandIn, tmp_path: Path) -> Settings:
    return Settings(store=f"s3://{batch_setup.bucket}", executor="batch", db=str(tmp_path / "runs.sqlite"),
                    batch_job_queue=batch_setup.queue, batch_job_definition=batch_setup.definition,
                    default_pipeline="wordcount", slack_bot_token=TOKEN, slack_signing_secret=SECRET,
                    slack_api_url=stand_in.url, poll_seconds=0.2)


def test_run_on_batch_failure_excerpt_from_cloudwatch_then_retry_click_resubmits(
        aws: Aws, shim: EntrypointShim, batch_setup: BatchSetup, aws_settings: Settings,
        start_bot: Callable[..., Served]) -> None:
    wordcount_batch(batch_setup.bucket, DATE, BATCH, 5, broken=(BROKEN,))
    served = start_bot(aws_settings)
    assert isinstance(served.bot.cyto.store, S3Store) and isinstance(served.bot.cyto.executor, BatchExecutor)

    run_id, root, ack = start_run(served, f"run {DATE} {BATCH} retries=0")
    assert f"Looking at {DATE}/{BATCH}" in ack
    assert root.params["text"].startswith(f"<@{USER}> started *{DATE}/{BATCH}*: 5 analyses")
    root_ts = root.ts
    served.drive(run_id, timeout=seconds(15))
    assert aws.calls("batch:submitjob") == 5, "one Batch job per analysis"
    assert aws.calls("logs:GetLogEvents") >= 1, "the excerpt was read from CloudWatch Logs"
    summary = served.bot.cyto.engine.summary(run_id)
    assert (summary.count(JobState.SUCCEEDED), summary.count(JobState.FAILED)) == (4, 1)
    assert root_updates(served, root_ts), "the root message is edited in place"
    assert "Finished with failures" in json.dumps(root_updates(served, root_ts)[-1].blocks)

    [reply] = failure_replies(served, root_ts)
    text = json.dumps(reply.blocks)
    assert BROKEN in text and "exit code 2" in text
    section = next(b for b in reply.blocks if b["type"] == "section" and BROKEN in b["text"]["text"])
    assert "```" in section["text"]["text"], "excerpt in a code block"
    assert 'names \\"missing.txt\\", which is not in the analysis folder' in json.dumps(section["text"]["text"])
    assert f"s3://{batch_setup.bucket}/Logs/{DATE}/{BATCH}/{BROKEN}/{run_id}/attempt-1.log" in text, \
        "where the full log is"
    [retry] = [b for b in buttons(reply) if b["text"]["text"] == "Retry"]
    [first_alert] = [c for c in thread_replies(served, root_ts) if "finished" in c.params["text"]]
    assert first_alert.params["text"].startswith(
        f"<@{USER}> *{DATE}/{BATCH}* finished with failures: 4 succeeded, 1 failed of 5")

    # Fix the input in S3, then click Retry (a signed block_actions request).
    boto3.client("s3").delete_object(Bucket=batch_setup.bucket, Key=f"Input/{DATE}/{BATCH}/{BROKEN}/params.json")
    status, _ = served.click(reply.ts, retry)
    assert status == 200
    wait_for(lambda: aws.calls("batch:submitjob") >= 6, timeout=seconds(10), what="the retry submitted to Batch")
    job = served.bot.cyto.engine.db.job(run_id, BROKEN)
    assert job is not None and job.attempt == 2 and job.retried_by == USER
    served.drive(run_id, timeout=seconds(15))

    assert served.bot.cyto.engine.db.job(run_id, BROKEN).state == JobState.SUCCEEDED
    assert served.bot.cyto.engine.get_run(run_id).state == RunState.SUCCEEDED
    assert aws.calls("batch:submitjob") == 6, "exactly one extra SubmitJob for the retry"
    assert sum(BROKEN in name for name in shim.started) == 2, "the broken analysis ran twice in Batch"
    edits = [c for c in served.stand_in.calls_to("chat.update") if c.params["ts"] == reply.ts]
    assert edits and f"Retried by <@{USER}>" in json.dumps(edits[-1].blocks) and not buttons(edits[-1])
    assert "every analysis succeeded" in json.dumps(root_updates(served, root_ts)[-1].blocks)
    alerts = [c for c in thread_replies(served, root_ts) if "finished" in c.params["text"]]
    assert len(alerts) == 2
    assert alerts[-1].params["text"].startswith(f"<@{USER}> *{DATE}/{BATCH}* finished: 5 succeeded, 0 failed of 5")
    assert f"s3://{batch_setup.bucket}/Output/{DATE}/{BATCH}/" in json.dumps(alerts[-1].blocks)
    # The report, in the run's own folder in S3, linked by a presigned URL that opens it without AWS keys.
    [where] = [b for b in alerts[-1].blocks if b.get("block_id") == "done_report"]
    link = re.fullmatch(r"<([^|]+)\|Open the run report> \(link valid 7 days\)", where["elements"][0]["text"])
    assert link is not None, where
    url = html.unescape(link.group(1))
    assert f"/Output/{DATE}/{BATCH}/_runs/{run_id}/report.html?" in url and "X-Amz-Expires=604800" in url
    with urllib.request.urlopen(url, timeout=seconds(10)) as response:
        page = response.read().decode()
    assert page.startswith("<!DOCTYPE html>") and f"cyto run {run_id}" in page
    assert len(failure_replies(served, root_ts)) == 1, "the retried attempt succeeded: no new failure reply"
    outputs = boto3.client("s3").list_objects_v2(Bucket=batch_setup.bucket, Prefix=f"Output/{DATE}/{BATCH}/")
    assert f"Output/{DATE}/{BATCH}/{BROKEN}/wordcount.json" in {o["Key"] for o in outputs.get("Contents", [])}
