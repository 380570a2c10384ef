"""What an observed executor status means for an attempt and its job. Pure."""

from __future__ import annotations

from typing import Any

from bot import defaults, failure_policy
from bot.executors import JobStatus, Resources, job_name
from bot.ledger import Attempt, Job, Transition
from bot.states import JobState


def plan_transition(job: Job, attempt: Attempt, status: JobStatus, cancelling: bool,
                    max_memory_mib: int = defaults.MAX_MEMORY_MIB,
                    memory_mib: int | None = None) -> Transition | None:
    """What an observed executor status means for an attempt and its job. Pure.
    A failure is retried or not as bot/failure_policy.py decides; the rule is recorded with it."""
    new = status.state
    if new == attempt.state and new in (JobState.QUEUED, JobState.RUNNING):
        return None
    common: dict[str, Any] = dict(run_id=job.run_id, analysis=job.analysis, job_id=job.id, attempt=attempt.attempt,
                  old_state=attempt.state, reason=status.reason, exit_code=status.exit_code,
                  log_ref=status.log_ref, started_at=status.started_at, stopped_at=status.stopped_at)
    if new in (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED):
        return Transition(attempt_state=new, job_state=new, **common)
    if new == JobState.CANCELLED or cancelling:
        return Transition(attempt_state=new, job_state=JobState.CANCELLED,
                          **{**common, "reason": status.reason or "cancelled"})
    memory = memory_mib or int((attempt.resources or {}).get("memory_mib") or Resources().memory_mib)
    decision = failure_policy.decide(attempt=attempt.attempt, max_attempts=job.max_attempts,
                                     exit_code=status.exit_code, reason=status.reason, memory_mib=memory,
                                     memory_retried=bool(job.memory_retried), max_memory_mib=max_memory_mib)
    if decision.retry:
        return Transition(attempt_state=JobState.FAILED, job_state=JobState.PENDING,
                          next_job_name=job_name(job.run_id, job.analysis, attempt.attempt + 1),
                          next_resources={"memory_mib": decision.memory_mib} if decision.memory_mib else None,
                          failure_rule=decision.rule, **common)
    return Transition(attempt_state=JobState.FAILED, job_state=JobState.FAILED, failure_rule=decision.rule,
                      **common)

