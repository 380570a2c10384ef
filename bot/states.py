"""Run and job states, and the transitions the engine allows. Pure code."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class JobState(StrEnum):
    PENDING = "PENDING"  # recorded; the attempt is being (or about to be) submitted
    QUEUED = "QUEUED"  # the executor has it and has not started it
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # failed for good: automatic retries spent
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset(JobState) - TERMINAL
# Order used for display (progress bars, summaries).
DISPLAY_ORDER = (
    JobState.PENDING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELLED,
)

def counts_text(counts: Mapping[JobState, int]) -> str:
    """'3 running, 5 succeeded, 1 failed': the non-zero counts in display order."""
    parts = [f"{counts[s]} {s.value.lower()}" for s in DISPLAY_ORDER if counts.get(s)]
    return ", ".join(parts) or "no analyses"


class RunState(StrEnum):
    HELD = "HELD"  # recorded, but nothing is submitted until a front end releases it (Slack: its thread exists)
    ACTIVE = "ACTIVE"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"  # every analysis succeeded
    FAILED = "FAILED"  # finished with at least one failure
    CANCELLED = "CANCELLED"

    @property
    def is_finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


def final_run_state(counts: dict[JobState, int], cancel_requested: bool) -> RunState:
    """The state of a run whose jobs are all terminal."""
    if cancel_requested or counts.get(JobState.CANCELLED, 0):
        return RunState.CANCELLED
    if counts.get(JobState.FAILED, 0):
        return RunState.FAILED
    return RunState.SUCCEEDED
