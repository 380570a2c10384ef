"""The executor interface: what the engine needs from a place that runs jobs.

One executor owns one backend (a local process pool, AWS Batch) and every status string of it;
the engine only sees `JobStatus` with the engine's own `JobState`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot import defaults
from bot.states import JobState
from container.contract import JobEnvironment


class ExecutorError(RuntimeError):
    """The executor cannot be used as configured; the message names the setting and the fix."""


@dataclass(frozen=True)
class Resources:
    vcpus: float = defaults.VCPUS
    memory_mib: int = defaults.MEMORY_MIB
    storage_gib: int = defaults.STORAGE_GIB
    timeout_s: int = defaults.TIMEOUT_S
    retries: int = defaults.RETRIES  # automatic retries after a failed attempt

    def as_dict(self) -> dict[str, Any]:
        return {"vcpus": self.vcpus, "memory_mib": self.memory_mib, "storage_gib": self.storage_gib,
                "timeout_s": self.timeout_s, "retries": self.retries}


@dataclass(frozen=True)
class JobSpec:
    """Everything needed to run one attempt of one analysis."""

    name: str  # deterministic: the same run, analysis and attempt always give the same name
    env: JobEnvironment
    resources: Resources
    tags: Mapping[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        return self.env.to_env()


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: JobState  # QUEUED, RUNNING, SUCCEEDED or FAILED (CANCELLED when the executor knows it)
    reason: str | None = None
    exit_code: int | None = None
    log_ref: str | None = None  # where the executor keeps this attempt's output (path, log stream)
    started_at: float | None = None
    stopped_at: float | None = None


class Executor(Protocol):
    """What the engine and the doctor ask of an executor. Every method is required: an executor with
    nothing to do for one (a flush when jobs start on submit) implements it as a no-op."""

    name: str
    submit_concurrency: int  # how many `submit` calls the engine may make at once (1: one at a time)

    def check(self) -> None:
        """Raise ExecutorError naming the setting and the fix when jobs cannot be submitted as
        configured. The same rule decides before a run is planned, before each submission and in
        `cyto doctor`, so the doctor is green exactly when submitting works."""
        ...

    def submit(self, spec: JobSpec) -> str:
        """Start the job; return the executor's job id. Submitting the same name twice is a bug the
        engine avoids by calling `find` first after a crash."""
        ...

    def find(self, job_name: str) -> str | None:
        """The id of a job already submitted under `job_name`, if any."""
        ...

    def describe(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Status of many jobs at once; unknown ids are left out."""
        ...

    def cancel(self, job_id: str, reason: str) -> None:
        """Stop the job (or drop it from the queue); stopping a finished or unknown job does nothing."""
        ...

    def read_log(self, status: JobStatus) -> str | None:
        """The attempt's log text as the executor captured it, or None when it has none."""
        ...

    def flush(self) -> None:
        """Start what was submitted; the engine calls it once after a submission pass that submitted
        anything. A no-op for an executor whose `submit` starts the job."""
        ...

    def explain(self, status: JobStatus, resources: Mapping[str, Any]) -> str | None:
        """Plain words when the executor itself stopped the attempt (not enough memory, a timeout, a
        reclaimed host), for log excerpts; None when the job's own log says why. `resources` are the
        attempt's (the run's, with the attempt's overrides)."""
        ...


_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_JOB_NAME = 128


def job_name(run_id: str, analysis: str, attempt: int) -> str:
    """A valid AWS Batch job name (≤ 128 chars of letters, digits, '-' and '_') that is unique per
    run, analysis and attempt; a short hash keeps analyses that differ only in unsafe characters apart."""
    digest = hashlib.sha1(analysis.encode()).hexdigest()[:8]
    slug = _JOB_NAME_UNSAFE.sub("-", analysis).strip("-") or "analysis"
    head = f"cyto-{run_id}-"
    tail = f"-{digest}-a{attempt}"
    return head + slug[: MAX_JOB_NAME - len(head) - len(tail)] + tail
