"""An executor whose jobs move only when the test says so, to test engine logic deterministically.
End-to-end tests use the real local executor instead."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.executors import JobSpec, JobStatus
from bot.states import JobState


class ScriptedExecutor:
    name = "scripted"
    submit_concurrency = 1

    def __init__(self, on_submit: Callable[[int], None] | None = None) -> None:
        self.on_submit = on_submit  # called with the number of submissions so far, before each returns
        self._lock = threading.RLock()
        self.specs: dict[str, JobSpec] = {}
        self.states: dict[str, JobStatus] = {}
        self.submit_calls: list[str] = []
        self.describe_calls: list[int] = []
        self.cancelled: list[str] = []
        self.logs: dict[str, str] = {}

    def submit(self, spec: JobSpec) -> str:
        with self._lock:
            self.submit_calls.append(spec.name)
            job_id = f"id-{spec.name}"
            self.specs[job_id] = spec
            self.states[job_id] = JobStatus(job_id, JobState.QUEUED)
            count = len(self.submit_calls)
        if self.on_submit is not None:
            self.on_submit(count)
        return job_id

    def find(self, job_name: str) -> str | None:
        job_id = f"id-{job_name}"
        with self._lock:
            return job_id if job_id in self.states else None

    def describe(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        with self._lock:
            self.describe_calls.append(len(job_ids))
            return {i: self.states[i] for i in job_ids if i in self.states}

    def cancel(self, job_id: str, reason: str) -> None:
        with self._lock:
            self.cancelled.append(job_id)
            if job_id in self.states and not self.states[job_id].state.is_terminal:
                self.states[job_id] = JobStatus(job_id, JobState.CANCELLED, reason=reason)

    def read_log(self, status: JobStatus) -> str | None:
        return self.logs.get(status.job_id)

    def check(self) -> None:
        pass  # nothing to configure

    def flush(self) -> None:
        pass  # jobs are queued as they are submitted

    def explain(self, status: JobStatus, resources: Mapping[str, Any]) -> str | None:
        return None

    # -- test controls ----------------------------------------------------------------------
    def job_ids(self, analysis: str) -> list[str]:
        with self._lock:
            return [i for i, s in self.specs.items() if s.env.analysis == analysis]

    def live(self) -> set[str]:
        """Jobs the executor still holds (queued or running)."""
        with self._lock:
            return {i for i, s in self.states.items() if not s.state.is_terminal}

    def finish_all(self, state: JobState = JobState.SUCCEEDED) -> None:
        with self._lock:
            for job_id in self.live():
                self.states[job_id] = JobStatus(job_id, state, exit_code=0 if state == JobState.SUCCEEDED else 1,
                                                started_at=1.0, stopped_at=2.0)

    def latest(self, analysis: str) -> str:
        return max(self.job_ids(analysis), key=lambda i: self.specs[i].env.attempt)

    def set(self, analysis: str, state: JobState, exit_code: int | None = None, reason: str | None = None,
            log: str | None = None) -> None:
        job_id = self.latest(analysis)
        self.states[job_id] = JobStatus(job_id, state, reason=reason, exit_code=exit_code, started_at=1.0,
                                        stopped_at=2.0 if state.is_terminal else None)
        if log is not None:
            self.logs[job_id] = log
