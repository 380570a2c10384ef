"""Run, job and attempt states, the one table of transitions the ledger allows, and the few pure rules
over states: their display order and counts text, the SQL guard of a set of states, and the state a
run ends in once its jobs have.

Every state change the ledger (bot/ledger/) makes is a compare-and-set whose guard comes from the
tables below: an UPDATE names the states it may move from, and a rowcount of 0 means the row had
already moved on (someone else acted first). Nothing else decides which changes are legal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypeVar


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
        return self in FINISHED_RUN


FINISHED_RUN = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

class EventKind(StrEnum):
    """What a ledger event says happened. The ledger writes one for each state change it makes, in the
    same transaction (`run_events`); every consumer reads them with its own cursor."""

    RUN_STARTED = "run_started"  # recorded, ACTIVE or HELD (its state says which)
    RUN_RELEASED = "run_released"  # a held run may now be submitted
    RUN_REOPENED = "run_reopened"  # a finished run reopened by a person's retry
    JOB_SUBMITTED = "job_submitted"  # an attempt is with the executor (QUEUED)
    JOB_CHANGED = "job_changed"  # queued / running / succeeded / cancelled
    JOB_RETRYING = "job_retrying"  # an attempt failed and an automatic retry follows
    JOB_FAILED = "job_failed"  # failed for good
    JOB_RETRIED = "job_retried"  # a person asked for a retry
    JOB_REPAIRED = "job_repaired"  # the job took its current attempt's state (a crash left them apart)
    RUN_CANCELLING = "run_cancelling"
    RUN_FINISHED = "run_finished"  # succeeded, failed, cancelled, or abandoned while held


# -- the transition table ------------------------------------------------------------------------
# An attempt is one try of one analysis at the executor. It moves forward only.
ATTEMPT_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
# A job is one analysis of a run; its state is its current attempt's, except that it goes back to
# PENDING when a new attempt starts: automatically after a failure, or when a person retries it.
JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED,
                                JobState.PENDING}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PENDING}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset({JobState.PENDING}),
    JobState.CANCELLED: frozenset({JobState.PENDING}),
}
# A run being cancelled only ever ends cancelled: no retry reopens it until it has stopped. A
# finished run is reopened only by a person's explicit retry. A held run (waiting for its Slack
# thread) is released to ACTIVE, or abandoned with nothing submitted.
RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    RunState.HELD: frozenset({RunState.ACTIVE, RunState.CANCELLED}),  # released, or abandoned (nothing submitted)
    RunState.ACTIVE: frozenset({RunState.CANCELLING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}),
    RunState.CANCELLING: frozenset({RunState.CANCELLED}),
    RunState.SUCCEEDED: frozenset({RunState.ACTIVE}),
    RunState.FAILED: frozenset({RunState.ACTIVE}),
    RunState.CANCELLED: frozenset({RunState.ACTIVE}),
}


S = TypeVar("S", JobState, RunState)


def can_move(table: Mapping[S, frozenset[S]], old: S, new: S) -> bool:
    return new in table[old]


def sources(table: Mapping[S, frozenset[S]], *targets: S) -> tuple[S, ...]:
    """The states from which every one of `targets` may be reached, in table order."""
    return tuple(old for old, allowed in table.items() if all(t in allowed for t in targets))


def sql_in(states: Iterable[StrEnum]) -> str:
    """`('A', 'B')` for an SQL guard; the values are this module's own enum values, never user input."""
    values = [f"'{s.value}'" for s in states]
    return f"({', '.join(values)})" if values else "(NULL)"


def final_run_state(counts: Mapping[JobState, int], cancel_requested: bool) -> RunState:
    """The state of a run whose jobs are all terminal."""
    if cancel_requested or counts.get(JobState.CANCELLED, 0):
        return RunState.CANCELLED
    if counts.get(JobState.FAILED, 0):
        return RunState.FAILED
    return RunState.SUCCEEDED
