"""What the ledger holds, as typed records, and how a row becomes one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bot.ledger.sql import Record
from bot.states import EventKind, JobState, RunState

# A row as the ledger returns it (bot/ledger/sql.py), or a plain mapping of column to value.
Row = Record | Mapping[str, Any]


@dataclass(frozen=True)
class Run:
    id: str
    date: str
    batch: str
    pipeline: str
    params: dict[str, Any]
    resources: dict[str, Any]
    executor: str
    store: str
    requested_by: str
    state: RunState
    created_at: float
    finished_at: float | None
    cancel_requested_by: str | None
    slack_channel: str | None
    slack_thread_ts: str | None
    version: int
    cancel_epoch: int = 0  # how many cancels the run has seen; a retry asked for before a cancel loses
    # Started alongside another unfinished run of the batch: outputs go to Output/{date}/{batch}.run-{run}/.
    outputs_scoped: bool = False

    @property
    def label(self) -> str:
        return f"{self.date}/{self.batch}"


@dataclass(frozen=True)
class Job:
    id: int
    run_id: str
    analysis: str
    state: JobState
    attempt: int
    max_attempts: int
    reason: str | None
    exit_code: int | None
    updated_at: float
    retried_by: str | None
    failure_rule: str | None = None  # the failure policy's rule for the last failed attempt
    memory_retried: int = 0  # whether the out-of-memory rule has granted its one retry


@dataclass(frozen=True)
class Attempt:
    job_id: int
    attempt: int
    job_name: str
    resources: dict[str, Any] | None
    state: JobState
    executor_job_id: str | None
    claim_token: str | None
    claimed_at: float | None
    reason: str | None
    exit_code: int | None
    log_ref: str | None
    submitted_at: float | None
    started_at: float | None
    stopped_at: float | None
    failure_rule: str | None = None
    cancel_sent_at: float | None = None


@dataclass(frozen=True)
class RunEvent:
    """One state change the ledger made (a row of `run_events`). `seq` orders every event of the
    ledger; a consumer keeps the last one it has seen."""

    seq: int
    run_id: str
    kind: EventKind
    analysis: str | None
    state: str | None
    attempt: int | None
    reason: str | None
    by: str | None
    at: float


def _as_dict(row: Row) -> dict[str, Any]:
    if isinstance(row, Record):
        return row.as_dict()
    return dict(row)


def run_record(row: Row) -> Run:
    d = _as_dict(row)
    d["params"] = json.loads(d["params"])
    d["resources"] = json.loads(d["resources"])
    d["state"] = RunState(d["state"])
    d["outputs_scoped"] = bool(d["outputs_scoped"])
    return Run(**d)


def job_record(row: Row) -> Job:
    d = _as_dict(row)
    d["state"] = JobState(d["state"])
    return Job(**d)


def attempt_record(row: Row) -> Attempt:
    d = _as_dict(row)
    d["state"] = JobState(d["state"])
    d["resources"] = json.loads(d["resources"]) if d["resources"] else None
    return Attempt(**d)


def event_record(row: Row) -> RunEvent:
    d = _as_dict(row)
    d["kind"] = EventKind(d["kind"])
    return RunEvent(**d)


JOB_FIELDS = [f.name for f in fields(Job)]
ATTEMPT_FIELDS = [f.name for f in fields(Attempt)]
JOB_COLUMNS = ", ".join(f"j.{name} AS j_{name}" for name in JOB_FIELDS)
ATTEMPT_COLUMNS = ", ".join(f"a.{name} AS a_{name}" for name in ATTEMPT_FIELDS)


def job_and_attempt(row: Record) -> tuple[Job, Attempt]:
    """Split a row selected with JOB_COLUMNS and ATTEMPT_COLUMNS."""
    values = row.as_dict()
    return (job_record({name: values[f"j_{name}"] for name in JOB_FIELDS}),
            attempt_record({name: values[f"a_{name}"] for name in ATTEMPT_FIELDS}))


ACTIVE_RUNS_SQL = """SELECT * FROM runs WHERE date = ? AND batch = ? AND state IN ('HELD', 'ACTIVE', 'CANCELLING')
                      ORDER BY created_at DESC, id"""


@dataclass(frozen=True)
class Transition:
    """One observed change of an attempt, and what it means for its job."""

    run_id: str
    analysis: str
    job_id: int
    attempt: int
    old_state: JobState
    attempt_state: JobState
    job_state: JobState
    reason: str | None = None
    exit_code: int | None = None
    log_ref: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    next_job_name: str | None = None  # set when the failure is retried automatically
    next_resources: dict[str, Any] | None = None  # the retry's resource overrides (more memory)
    failure_rule: str | None = None  # the failure policy's rule, for a failed attempt

    @property
    def retrying(self) -> bool:
        return self.next_job_name is not None
