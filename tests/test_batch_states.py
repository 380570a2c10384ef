"""The pure parts of the Batch executor: state mapping, reasons, explanations, stuck diagnosis, payload."""

from __future__ import annotations

import pytest

from bot.executors import JobSpec, Resources
from bot.executors.batch import RETRY_STRATEGY_RULES, derived_definition_name, submit_request
from bot.executors.batch_states import cancel_reason, diagnose_stuck, explain, job_needs, to_status
from bot.states import JobState
from container.contract import JobEnvironment


def record(status: str, **extra: object) -> dict:
    return {"jobId": "j-1", "jobName": "n", "status": status, **extra}


@pytest.mark.parametrize(("batch", "ours"), [
    ("SUBMITTED", JobState.QUEUED), ("PENDING", JobState.QUEUED), ("RUNNABLE", JobState.QUEUED),
    ("STARTING", JobState.QUEUED), ("RUNNING", JobState.RUNNING), ("SUCCEEDED", JobState.SUCCEEDED),
    ("FAILED", JobState.FAILED)])
def test_every_batch_state_maps(batch: str, ours: JobState) -> None:
    assert to_status(record(batch)).state == ours


def test_failed_job_records_container_reason_exit_code_stream_and_times() -> None:
    status = to_status(record(
        "FAILED", statusReason="Essential container in task exited", startedAt=1_700_000_000_000,
        stoppedAt=1_700_000_060_500,
        container={"exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage",
                   "logStreamName": "cyto-job/default/abc"}))
    assert status.reason == "OutOfMemoryError: Container killed due to memory usage"
    assert (status.exit_code, status.log_ref) == (137, "cyto-job/default/abc")
    assert (status.started_at, status.stopped_at) == (1_700_000_000.0, 1_700_000_060.5)


def test_reasons_from_the_latest_attempt_and_plain_exit_codes() -> None:
    spot = to_status(record("FAILED", attempts=[
        {"container": {"logStreamName": "s/1"}, "statusReason": "Host EC2 (instance i-1) terminated."}]))
    assert spot.reason == "Host EC2 (instance i-1) terminated." and spot.log_ref == "s/1"
    own = to_status(record("FAILED", statusReason="Essential container in task exited", container={"exitCode": 2}))
    assert own.reason == "exit code 2"
    assert to_status(record("SUCCEEDED", statusReason="Essential container in task exited")).reason is None
    assert to_status(record("RUNNABLE")).started_at is None


def test_our_cancel_is_cancelled_not_failed() -> None:
    status = to_status(record("FAILED", statusReason=cancel_reason("cancelled by ana")))
    assert (status.state, status.reason) == (JobState.CANCELLED, "cancelled by ana")
    assert to_status(record("FAILED", statusReason="cancelled by someone else")).state == JobState.FAILED


def test_explanations_are_plain_words_with_the_fix() -> None:
    resources = {"memory_mib": 2048, "timeout_s": 3600}
    assert explain("OutOfMemoryError: Container killed due to memory usage", 137, resources) == \
        "killed for memory at 2048 MiB: retry with --memory 4096"
    assert "image could not be downloaded" in explain("CannotPullContainerError: pull access denied", None,
                                                      resources)
    assert explain("Job attempt duration exceeded timeout", None, resources) == \
        "stopped at the time limit of 3600 s: retry with --timeout 7200"
    assert "Spot instance reclaimed" in explain("Host EC2 (instance i-1) terminated.", None, resources)
    assert explain("exit code 2", 2, resources) is None
    assert explain(None, None, resources) is None


def test_stuck_diagnosis() -> None:
    queue = {"jobQueueName": "q", "state": "ENABLED", "status": "VALID"}
    env = {"computeEnvironmentName": "ce", "state": "ENABLED", "status": "VALID", "type": "MANAGED",
           "computeResources": {"maxvCpus": 4, "desiredvCpus": 0}}
    assert diagnose_stuck(queue, [env], 2, 2048) is None
    assert "DISABLED" in diagnose_stuck({**queue, "state": "DISABLED"}, [env], 2, 2048)
    assert "ce is DISABLED/VALID" in diagnose_stuck(queue, [{**env, "state": "DISABLED"}], 2, 2048)
    assert "INVALID (bad role)" in diagnose_stuck(queue, [{**env, "status": "INVALID", "statusReason": "bad role"}],
                                                  2, 2048)
    assert "asks for 8 vCPUs but" in diagnose_stuck(queue, [env], 8, 2048)
    assert "largest instance type" in diagnose_stuck(queue, [env], 2, 16384, {"m5.large": (2, 8192)})
    busy = {**env, "computeResources": {"maxvCpus": 4, "desiredvCpus": 4}}
    assert "at their limit of 4 vCPUs" in diagnose_stuck(queue, [busy], 1, 2048)
    assert job_needs({"container": {"resourceRequirements": [{"type": "VCPU", "value": "2"},
                                                             {"type": "MEMORY", "value": "4096"}]}}) == (2.0, 4096)


def test_submit_request_payload() -> None:
    env = JobEnvironment(run_id="r1", attempt=1, date="2024-01-02", batch="b", analysis="A01", pipeline="wordcount",
                         input_uri="s3://x/Input/", output_uri="s3://x/Output/", logs_uri="s3://x/Logs/")
    spec = JobSpec("cyto-r1-A01-x-a1", env, Resources(vcpus=2, memory_mib=4096, timeout_s=30),
                   {"cyto:run": "r1", "cyto:requested-by": ""})
    request = submit_request(spec, "q", "def", 2)
    assert request["jobName"] == "cyto-r1-A01-x-a1" and request["jobQueue"] == "q"
    overrides = request["containerOverrides"]
    assert {"name": "CYTO_RUN_ID", "value": "r1"} in overrides["environment"]
    assert overrides["resourceRequirements"] == [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}]
    assert request["timeout"] == {"attemptDurationSeconds": 60}  # Batch's minimum
    assert request["retryStrategy"]["attempts"] == 2
    assert request["retryStrategy"]["evaluateOnExit"][0] == {"onStatusReason": "Host EC2*", "action": "RETRY"}
    assert all(rule["action"] == "EXIT" for rule in RETRY_STRATEGY_RULES[1:]) and len(RETRY_STRATEGY_RULES) <= 5
    assert request["tags"] == {"cyto:run": "r1"} and request["propagateTags"] is True
    assert derived_definition_name("x" * 200, 50).endswith("-storage-50gib")
    assert len(derived_definition_name("x" * 200, 50)) == 128
