"""Durable events: one row of `run_events` for each state change the ledger makes, written in the
same transaction as the change, so an event exists exactly when its change was committed.

`seq` grows with every event. Writers are serialised on both engines (SQLite's write lock; on
PostgreSQL the advisory lock every write transaction takes, bot/ledger/connection.py), and `seq` is
allocated inside the transaction, so events commit in `seq` order: a reader that keeps the last `seq`
it saw (its cursor) misses none and sees none twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.ledger.records import Transition
from bot.ledger.sql import Conn
from bot.states import EventKind, JobState

INSERT_EVENT = """INSERT INTO run_events (run_id, kind, analysis, state, attempt, reason, "by", at)
                  VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
# The same, for a job known by its id: the run and analysis come from the jobs table.
INSERT_JOB_EVENT = """INSERT INTO run_events (run_id, kind, analysis, state, attempt, reason, "by", at)
                      SELECT run_id, ?, analysis, ?, ?, ?, ?, ? FROM jobs WHERE id = ?"""


@dataclass(frozen=True)
class NewEvent:
    kind: EventKind
    run_id: str
    at: float
    analysis: str | None = None
    state: str | None = None
    attempt: int | None = None
    reason: str | None = None
    by: str | None = None


# PostgreSQL: every event of a transaction in one statement (one array per column), inserted in order.
INSERT_EVENTS_ARRAYS = """INSERT INTO run_events (run_id, kind, analysis, state, attempt, reason, "by", at)
    SELECT run_id, kind, analysis, state, attempt, reason, "by", at
    FROM unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]),
                CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS DOUBLE PRECISION[]))
         WITH ORDINALITY AS e(run_id, kind, analysis, state, attempt, reason, "by", at, n)
    ORDER BY n"""


def add_events(conn: Conn, events: Iterable[NewEvent]) -> None:
    """Write events inside the caller's transaction, in order (on PostgreSQL in one round trip, however
    many events a poll makes)."""
    rows = [(e.run_id, e.kind.value, e.analysis, e.state, e.attempt, e.reason, e.by, e.at) for e in events]
    if not rows:
        return
    if conn.dialect == "postgresql":
        conn.execute(INSERT_EVENTS_ARRAYS, [list(column) for column in zip(*rows, strict=True)])
    else:
        conn.executemany(INSERT_EVENT, rows)


def add_job_event(conn: Conn, kind: EventKind, job_id: int, state: JobState, attempt: int,
                  at: float, reason: str | None = None, by: str | None = None) -> None:
    conn.execute(INSERT_JOB_EVENT, (kind.value, state.value, attempt, reason, by, at, job_id))


def transition_kind(t: Transition) -> EventKind:
    """The event an observed change of an attempt makes."""
    if t.retrying:
        return EventKind.JOB_RETRYING
    if t.job_state == JobState.FAILED:
        return EventKind.JOB_FAILED
    return EventKind.JOB_CHANGED


def bump_versions(conn: Conn, run_ids: Iterable[str]) -> None:
    """Each run changed in this transaction gets one new `version` (what Slack compares with what it
    showed), however many of its jobs changed."""
    conn.executemany("UPDATE runs SET version = version + 1 WHERE id = ?", [(r,) for r in dict.fromkeys(run_ids)])
