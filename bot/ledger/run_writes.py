"""Writes of a whole run: record it, hold and release it, cancel it, close it.

Each is a compare-and-set whose guard comes from the transition tables in bot/states.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from bot.ledger.connection import LedgerConnection
from bot.ledger.errors import BatchBusy
from bot.ledger.events import INSERT_JOB_EVENT, NewEvent, add_events
from bot.ledger.records import ACTIVE_RUNS_SQL, Run, run_record
from bot.states import JOB_TRANSITIONS, RUN_TRANSITIONS, EventKind, JobState, RunState, can_move, sources, sql_in


class RunWrites(LedgerConnection):
    def create_run(self, run: Run, analyses: Sequence[str], max_attempts: int,
                   job_names: Sequence[str], now: float, *, allow_concurrent: bool = False) -> bool:
        """Record a run, one job per analysis and each job's first attempt (the intent to submit).
        Returns False when the run id is taken. Raises BatchBusy when another run of the batch is
        unfinished, unless `allow_concurrent`; then the new run's outputs are scoped to it."""
        with self.transaction() as conn:
            active = conn.execute(ACTIVE_RUNS_SQL + " LIMIT 1", (run.date, run.batch)).fetchone()
            if active is not None and not allow_concurrent:
                raise BatchBusy(run_record(active))
            cur = conn.execute(
                """INSERT INTO runs (id, date, batch, pipeline, params, resources, executor, store,
                   requested_by, state, created_at, slack_channel, slack_thread_ts, outputs_scoped)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING""",
                (run.id, run.date, run.batch, run.pipeline, json.dumps(run.params),
                 json.dumps(run.resources), run.executor, run.store, run.requested_by, run.state.value,
                 run.created_at, run.slack_channel, run.slack_thread_ts, int(active is not None)))
            if not cur.rowcount:
                return False
            first_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs").fetchone()[0]
            conn.executemany(
                """INSERT INTO jobs (id, run_id, analysis, state, attempt, max_attempts, updated_at)
                   VALUES (?, ?, ?, 'PENDING', 1, ?, ?)""",
                [(first_id + i, run.id, a, max_attempts, now) for i, a in enumerate(analyses)])
            conn.executemany(
                "INSERT INTO attempts (job_id, attempt, job_name, state) VALUES (?, 1, ?, 'PENDING')",
                [(first_id + i, name) for i, name in enumerate(job_names)])
            add_events(conn, [NewEvent(EventKind.RUN_STARTED, run.id, now, state=run.state.value,
                                       by=run.requested_by)])
        return True

    def set_slack_thread(self, run_id: str, channel: str, thread_ts: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET slack_channel = ?, slack_thread_ts = ? WHERE id = ?",
                         (channel, thread_ts, run_id))

    def release_run(self, run_id: str, channel: str, thread_ts: str, now: float | None = None) -> bool:
        """End a run's hold: it gets its Slack thread and may be submitted. Acts once."""
        with self.transaction() as conn:
            assert can_move(RUN_TRANSITIONS, RunState.HELD, RunState.ACTIVE)
            cur = conn.execute("""UPDATE runs SET state = 'ACTIVE', slack_channel = ?, slack_thread_ts = ?,
                                      version = version + 1 WHERE id = ? AND state = 'HELD'""",
                               (channel, thread_ts, run_id))
            if cur.rowcount:
                add_events(conn, [NewEvent(EventKind.RUN_RELEASED, run_id, time.time() if now is None else now,
                                           state=RunState.ACTIVE.value)])
            return bool(cur.rowcount)

    def abandon_run(self, run_id: str, reason: str, now: float) -> bool:
        """Give up a held run: nothing of it was submitted, every job is cancelled. Acts once."""
        with self.transaction() as conn:
            cur = conn.execute("""UPDATE runs SET state = 'CANCELLED', finished_at = ?, version = version + 1
                                  WHERE id = ? AND state = 'HELD'""", (now, run_id))
            if not cur.rowcount:
                return False
            pending = conn.execute("SELECT id, attempt FROM jobs WHERE run_id = ? AND state = 'PENDING'",
                                   (run_id,)).fetchall()
            conn.execute("""UPDATE attempts SET state = 'CANCELLED', reason = ?, stopped_at = ?
                            WHERE state = 'PENDING' AND job_id IN (SELECT id FROM jobs WHERE run_id = ?)""",
                         (reason, now, run_id))
            conn.execute("""UPDATE jobs SET state = 'CANCELLED', reason = ?, updated_at = ?
                            WHERE run_id = ? AND state = 'PENDING'""", (reason, now, run_id))
            conn.executemany(INSERT_JOB_EVENT, [(EventKind.JOB_CHANGED.value, JobState.CANCELLED.value, attempt,
                                                 reason, None, now, job_id) for job_id, attempt in pending])
            add_events(conn, [NewEvent(EventKind.RUN_FINISHED, run_id, now, state=RunState.CANCELLED.value,
                                       reason=reason)])
        return True

    def request_cancel(self, run_id: str, by: str, now: float) -> bool:
        """Mark an unfinished run as cancelling and cancel its not-yet-submitted attempts, claimed ones
        included (their claimer finds out when it records, and stops what it submitted). Acts once."""
        run_from = sql_in(sources(RUN_TRANSITIONS, RunState.CANCELLING))
        job_from = sql_in(sources(JOB_TRANSITIONS, JobState.CANCELLED))
        with self.transaction() as conn:
            cur = conn.execute(f"""UPDATE runs SET state = 'CANCELLING', cancel_requested_by = ?,
                                       cancel_epoch = cancel_epoch + 1, version = version + 1
                                   WHERE id = ? AND state IN {run_from}""", (by, run_id))
            if not cur.rowcount:
                return False
            add_events(conn, [NewEvent(EventKind.RUN_CANCELLING, run_id, now, state=RunState.CANCELLING.value,
                                       by=by)])
            pending = conn.execute(
                """SELECT j.id, j.attempt FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                   WHERE j.run_id = ? AND j.state = 'PENDING' AND a.state = 'PENDING'
                     AND a.executor_job_id IS NULL""", (run_id,)).fetchall()
            conn.executemany("""UPDATE attempts SET state = 'CANCELLED', reason = 'cancelled', stopped_at = ?
                                WHERE job_id = ? AND attempt = ? AND state = 'PENDING'""",
                             [(now, job_id, attempt) for job_id, attempt in pending])
            conn.executemany(f"""UPDATE jobs SET state = 'CANCELLED', reason = 'cancelled', updated_at = ?
                                 WHERE id = ? AND attempt = ? AND state IN {job_from}""",
                             [(now, job_id, attempt) for job_id, attempt in pending])
            conn.executemany(INSERT_JOB_EVENT, [(EventKind.JOB_CHANGED.value, JobState.CANCELLED.value, attempt,
                                                 "cancelled", by, now, job_id) for job_id, attempt in pending])
        return True

    def finish_run(self, run_id: str, state: RunState, now: float) -> bool:
        """Close a run whose jobs are all terminal and whose claims are all resolved; acts once."""
        run_from = sql_in(sources(RUN_TRANSITIONS, state))
        with self.transaction() as conn:
            busy = conn.execute(
                """SELECT EXISTS (SELECT 1 FROM jobs WHERE run_id = ? AND state IN ('PENDING', 'QUEUED', 'RUNNING'))
                       OR EXISTS (SELECT 1 FROM jobs j JOIN attempts a ON a.job_id = j.id
                                  WHERE j.run_id = ? AND a.claim_token IS NOT NULL AND a.executor_job_id IS NULL
                                    AND a.state = 'CANCELLED')""", (run_id, run_id)).fetchone()[0]
            if busy:
                return False
            cur = conn.execute(f"""UPDATE runs SET state = ?, finished_at = ?, version = version + 1
                                   WHERE id = ? AND state IN {run_from}""", (state.value, now, run_id))
            if cur.rowcount:
                add_events(conn, [NewEvent(EventKind.RUN_FINISHED, run_id, now, state=state.value)])
            return bool(cur.rowcount)
