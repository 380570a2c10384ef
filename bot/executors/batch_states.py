"""The one place that knows AWS Batch's job states and reasons. Pure code: dicts in, words out.

- `to_status` turns one DescribeJobs record into the engine's `JobStatus`.
- `explain` turns a recorded reason and exit code into plain words with the fix, for failures where
  Batch itself stopped the job (so the job's own log says little or nothing).
- `diagnose_stuck` says why a job may sit in RUNNABLE, from the queue and compute environments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bot.executors import JobStatus
from bot.failure_policy import bigger_memory, is_out_of_memory
from bot.states import JobState

STATE_MAP: dict[str, JobState] = {
    "SUBMITTED": JobState.QUEUED,
    "PENDING": JobState.QUEUED,
    "RUNNABLE": JobState.QUEUED,
    "STARTING": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
}
NOT_STARTED = frozenset({"SUBMITTED", "PENDING", "RUNNABLE"})  # CancelJob works; later needs TerminateJob
STARTED = frozenset({"STARTING", "RUNNING"})

# Every CancelJob/TerminateJob reason we send starts with this, so a FAILED job whose statusReason
# starts with it was stopped by us, not by its own error.
CANCEL_MARK = "cyto: "
# Batch's statusReason for any container that exited on its own: it says nothing the exit code does not.
GENERIC_STATUS_REASONS = frozenset({"Essential container in task exited"})
HOST_TERMINATED = "Host EC2"  # "Host EC2 (instance i-0123) terminated." - a reclaimed Spot host, say
TIMEOUT_REASON = "Job attempt duration exceeded timeout"


def queue_accepts_jobs(queue: Mapping[str, Any]) -> bool:
    """Whether jobs can be submitted to a job queue: ENABLED, and not INVALID (a queue being UPDATING
    or CREATING takes submissions). The executor submits, and the doctor reports, by this one rule."""
    return queue.get("state") == "ENABLED" and queue.get("status") != "INVALID"


def cancel_reason(reason: str) -> str:
    return CANCEL_MARK + reason


def _ms(value: Any) -> float | None:
    return value / 1000.0 if isinstance(value, int | float) and value > 0 else None


def _latest_attempt(job: Mapping[str, Any]) -> Mapping[str, Any]:
    attempts = job.get("attempts") or []
    return attempts[-1] if attempts else {}


def to_status(job: Mapping[str, Any]) -> JobStatus:
    batch_state = job["status"]
    state = STATE_MAP[batch_state]
    container = job.get("container") or {}
    last = _latest_attempt(job)
    last_container = last.get("container") or {}
    exit_code = container.get("exitCode", last_container.get("exitCode"))
    container_reason = container.get("reason") or last_container.get("reason")
    status_reason = job.get("statusReason") or last.get("statusReason")
    log_ref = container.get("logStreamName") or last_container.get("logStreamName")
    if state == JobState.FAILED and status_reason and status_reason.startswith(CANCEL_MARK):
        return JobStatus(job["jobId"], JobState.CANCELLED, status_reason[len(CANCEL_MARK):], exit_code, log_ref,
                         _ms(job.get("startedAt")), _ms(job.get("stoppedAt")))
    if state == JobState.SUCCEEDED:
        reason = None
    elif state == JobState.FAILED:
        reason = failure_reason(status_reason, container_reason, exit_code)
    else:
        reason = status_reason  # e.g. "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - ..." while RUNNABLE
    return JobStatus(job["jobId"], state, reason, exit_code, log_ref,
                     _ms(job.get("startedAt")), _ms(job.get("stoppedAt")))


def failure_reason(status_reason: str | None, container_reason: str | None, exit_code: int | None) -> str | None:
    """The container's reason first (`OutOfMemoryError: Container killed due to memory usage`), so that
    `explain` can work from the recorded reason alone; then Batch's own reason unless it is generic."""
    parts = [container_reason] if container_reason else []
    if status_reason and status_reason not in GENERIC_STATUS_REASONS and status_reason != container_reason:
        parts.append(status_reason)
    if not parts and exit_code not in (None, 0):
        parts.append(f"exit code {exit_code}")
    if not parts and status_reason:
        parts.append(status_reason)
    return "; ".join(parts) or None


# -- plain words for failures Batch caused ---------------------------------------------------------


def explain(reason: str | None, exit_code: int | None, resources: Mapping[str, Any]) -> str | None:
    """Plain words and the fix when Batch itself stopped the job; None when the job failed on its own."""
    text = reason or ""
    memory = int(resources.get("memory_mib") or 0)
    timeout = int(resources.get("timeout_s") or 0)
    if is_out_of_memory(reason, exit_code):
        bigger = bigger_memory(memory, 1_048_576)
        at = f" at {memory} MiB" if memory else ""
        return f"killed for memory{at}: retry with --memory {bigger}"
    if "CannotPullContainer" in text:
        return ("the job's container image could not be downloaded, so the analysis never started; "
                "this is a set-up problem, not your data: ask whoever maintains the pipeline image "
                f"(the image of CYTO_BATCH_JOB_DEFINITION). Batch said: {text}")
    if TIMEOUT_REASON in text:
        longer = f"retry with --timeout {timeout * 2}" if timeout else "retry with a longer --timeout"
        limit = f" of {timeout} s" if timeout else ""
        return f"stopped at the time limit{limit}: {longer}"
    if HOST_TERMINATED in text or "Spot" in text:
        return ("the machine running it was taken away (a Spot instance reclaimed or a host terminated); "
                "nothing is wrong with the analysis: retry it")
    if "CannotStartContainerError" in text or "ResourceInitializationError" in text:
        return f"the container could not start on the machine Batch chose; retry it. Batch said: {text}"
    return None


# -- why a job stays RUNNABLE -------------------------------------------------------------------------


def job_needs(job: Mapping[str, Any]) -> tuple[float, int]:
    """(vCPUs, MiB) a DescribeJobs record asks for."""
    container = job.get("container") or {}
    vcpus, memory = float(container.get("vcpus") or 0), int(container.get("memory") or 0)
    for item in container.get("resourceRequirements") or []:
        if item["type"] == "VCPU":
            vcpus = float(item["value"])
        elif item["type"] == "MEMORY":
            memory = int(item["value"])
    return vcpus, memory


def diagnose_stuck(queue: Mapping[str, Any] | None, environments: Sequence[Mapping[str, Any]], vcpus: float,
                   memory_mib: int, instance_sizes: Mapping[str, tuple[int, int]] | None = None) -> str | None:
    """Why a job asking for `vcpus`/`memory_mib` cannot start, from DescribeJobQueues and
    DescribeComputeEnvironments records; `instance_sizes` maps instance type -> (vCPUs, MiB)."""
    if queue is None:
        return "its job queue no longer exists (CYTO_BATCH_JOB_QUEUE)"
    name = queue.get("jobQueueName", "?")
    if queue.get("state") == "DISABLED":
        return f"the job queue {name} is DISABLED: enable it in the Batch console or the deploy stack"
    if queue.get("status") == "INVALID":
        return f"the job queue {name} is INVALID: {queue.get('statusReason') or 'see the Batch console'}"
    usable = [env for env in environments if env.get("state") == "ENABLED" and env.get("status") != "INVALID"]
    if not usable:
        details = "; ".join(f"{env.get('computeEnvironmentName')} is {env.get('state')}/{env.get('status')}"
                            + (f" ({env['statusReason']})" if env.get("statusReason") else "")
                            for env in environments) or "it has none"
        return f"no compute environment of queue {name} can run jobs: {details}"
    managed = [env for env in usable if env.get("type") == "MANAGED" and env.get("computeResources")]
    if len(managed) < len(usable):
        return None  # an unmanaged environment: its capacity is someone else's business
    max_vcpus = max(env["computeResources"].get("maxvCpus", 0) for env in managed)
    if vcpus > max_vcpus:
        return (f"it asks for {_num(vcpus)} vCPUs but the compute environments of {name} allow at most "
                f"{max_vcpus}: run with fewer --vcpus, or raise maxvCpus in the deploy stack")
    if instance_sizes:
        fits = [t for t, (cpu, mib) in instance_sizes.items() if cpu >= vcpus and mib * 0.95 >= memory_mib]
        if not fits:
            largest = max(instance_sizes.values(), key=lambda size: size[1])
            return (f"it asks for {_num(vcpus)} vCPUs and {memory_mib} MiB but the largest instance type of "
                    f"{name} has {largest[0]} vCPUs and {largest[1]} MiB: run with less --memory, or add "
                    "a bigger instance type to the compute environment")
    busy = [env for env in managed
            if env["computeResources"].get("desiredvCpus", 0) + math.ceil(vcpus) > env["computeResources"]["maxvCpus"]]
    if len(busy) == len(managed):
        return (f"the compute environments of {name} are at their limit of {max_vcpus} vCPUs: "
                "the job starts when others finish (or raise maxvCpus)")
    return None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
