"""Writes of jobs and attempts: claims, submissions, observed changes, retries and repairs.

Each is a compare-and-set whose guard comes from the transition tables in bot/states.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bot.ledger.connection import LedgerConnection, Refused
from bot.ledger.events import INSERT_JOB_EVENT, NewEvent, add_events, add_job_event, bump_versions, transition_kind
from bot.ledger.records import ATTEMPT_COLUMNS, JOB_COLUMNS, Attempt, Job, Transition, job_and_attempt
from bot.ledger.sql import Conn
from bot.states import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    RUN_TRANSITIONS,
    EventKind,
    JobState,
    RunState,
    can_move,
    sources,
    sql_in,
)


class JobWrites(LedgerConnection):
    def claim_pending(self, run_id: str, token: str, now: float, stale: Sequence[str],
                      limit: int) -> list[tuple[Job, Attempt]]:
        """Claim up to `limit` attempts waiting to be submitted: unclaimed ones, and ones whose claim
        is held by a token in `stale` (a process that died, or a pass of this process that ended
        without recording). Returns (job, attempt-before-claim); a claimed-before attempt may already be
        with the executor, so the caller looks it up by name before submitting it."""
        with self.transaction() as conn:
            stale_sql = f" OR a.claim_token IN ({','.join('?' * len(stale))})" if stale else ""
            rows = conn.execute(
                f"""SELECT {JOB_COLUMNS}, {ATTEMPT_COLUMNS}
                    FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                    JOIN runs r ON r.id = j.run_id
                    WHERE j.run_id = ? AND r.state = 'ACTIVE' AND j.state = 'PENDING' AND a.state = 'PENDING'
                      AND a.executor_job_id IS NULL AND (a.claim_token IS NULL{stale_sql})
                    ORDER BY j.id LIMIT ?""", [run_id, *stale, limit]).fetchall()
            claimed = [job_and_attempt(row) for row in rows]
            conn.executemany("UPDATE attempts SET claim_token = ?, claimed_at = ? WHERE job_id = ? AND attempt = ?",
                             [(token, now, job.id, job.attempt) for job, _ in claimed])
        return claimed

    def claim_tokens(self, run_id: str) -> list[str]:
        """Tokens holding a claim that is not resolved yet: on an attempt waiting to be submitted, or on
        one cancelled while it was being submitted (its job may exist at the executor)."""
        return [r[0] for r in self.query(
            """SELECT DISTINCT a.claim_token FROM jobs j JOIN attempts a ON a.job_id = j.id
               WHERE j.run_id = ? AND a.claim_token IS NOT NULL AND a.executor_job_id IS NULL
                 AND a.state IN ('PENDING', 'CANCELLED')""", (run_id,))]

    def record_submitted(self, run_id: str, submitted: Sequence[tuple[int, int, str]], token: str,
                         now: float) -> tuple[int, list[tuple[int, int, str]]]:
        """Record executor job ids for claimed attempts: (job_id, attempt, executor_job_id).

        Only an attempt still PENDING under this claim is recorded. Returns how many were, and the
        ones that lost the race (cancelled meanwhile, or the claim taken over): their executor jobs
        are not the ledger's and the caller must stop them."""
        changed, lost = 0, []
        attempt_from = sql_in(sources(ATTEMPT_TRANSITIONS, JobState.QUEUED))
        job_from = sql_in(sources(JOB_TRANSITIONS, JobState.QUEUED))
        recorded: list[tuple[int, int]] = []
        with self.transaction() as conn:
            if conn.dialect == "postgresql" and len({(j, a) for j, a, _ in submitted}) == len(submitted):
                moved = {(r[0], r[1]) for r in conn.execute(
                    f"""UPDATE attempts AS a SET executor_job_id = v.executor_job_id, state = 'QUEUED', submitted_at = ?
                        FROM unnest(CAST(? AS INTEGER[]), CAST(? AS INTEGER[]), CAST(? AS TEXT[]))
                             AS v(job_id, attempt, executor_job_id)
                        WHERE a.job_id = v.job_id AND a.attempt = v.attempt AND a.claim_token = ?
                          AND a.executor_job_id IS NULL AND a.state IN {attempt_from}
                        RETURNING a.job_id, a.attempt""",
                    [now, *[list(c) for c in zip(*submitted, strict=True)], token])} if submitted else set()
            else:
                moved = {(job_id, attempt) for job_id, attempt, executor_job_id in submitted if conn.execute(
                    f"""UPDATE attempts SET executor_job_id = ?, state = 'QUEUED', submitted_at = ?
                        WHERE job_id = ? AND attempt = ? AND claim_token = ? AND executor_job_id IS NULL
                          AND state IN {attempt_from}""",
                    (executor_job_id, now, job_id, attempt, token)).rowcount}
            for job_id, attempt, executor_job_id in submitted:
                if (job_id, attempt) in moved:
                    recorded.append((job_id, attempt))
                else:
                    lost.append((job_id, attempt, executor_job_id))
            conn.executemany(f"""UPDATE jobs SET state = 'QUEUED', updated_at = ?
                                 WHERE id = ? AND attempt = ? AND state IN {job_from}""",
                             [(now, job_id, attempt) for job_id, attempt in recorded])
            conn.executemany(INSERT_JOB_EVENT, [(EventKind.JOB_SUBMITTED.value, JobState.QUEUED.value, attempt, None,
                                                 None, now, job_id) for job_id, attempt in recorded])
            changed = len(recorded)
            if changed:
                conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (run_id,))
        return changed, lost

    def record_submit_failed(self, run_id: str, job_id: int, attempt: int, token: str, reason: str,
                             now: float, rule: str | None = None) -> bool:
        """A claimed attempt could not be submitted: it and its job go from PENDING to FAILED with the reason."""
        assert can_move(ATTEMPT_TRANSITIONS, JobState.PENDING, JobState.FAILED)
        assert can_move(JOB_TRANSITIONS, JobState.PENDING, JobState.FAILED)
        with self.transaction() as conn:
            cur = conn.execute(
                """UPDATE attempts SET state = 'FAILED', reason = ?, stopped_at = ?, failure_rule = ?
                   WHERE job_id = ? AND attempt = ? AND claim_token = ? AND executor_job_id IS NULL
                     AND state = 'PENDING'""",
                (reason, now, rule, job_id, attempt, token))
            if not cur.rowcount:
                return False
            conn.execute("""UPDATE jobs SET state = 'FAILED', reason = ?, failure_rule = ?, updated_at = ?
                            WHERE id = ? AND attempt = ? AND state = 'PENDING'""",
                         (reason, rule, now, job_id, attempt))
            add_job_event(conn, EventKind.JOB_FAILED, job_id, JobState.FAILED, attempt, now, reason)
            conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (run_id,))
        return True

    def record_orphan(self, job_id: int, attempt: int, executor_job_id: str) -> bool:
        """Note the executor job of an attempt that was cancelled while it was being submitted: the
        intent to stop it, recorded before the executor is asked to."""
        with self.transaction() as conn:
            cur = conn.execute("""UPDATE attempts SET executor_job_id = ?
                                  WHERE job_id = ? AND attempt = ? AND state = 'CANCELLED'
                                    AND executor_job_id IS NULL""", (executor_job_id, job_id, attempt))
        return bool(cur.rowcount)

    def clear_claim(self, job_id: int, attempt: int, token: str) -> None:
        """Resolve the claim on a cancelled attempt that never reached the executor."""
        with self.transaction() as conn:
            conn.execute("""UPDATE attempts SET claim_token = NULL
                            WHERE job_id = ? AND attempt = ? AND claim_token = ? AND state = 'CANCELLED'
                              AND executor_job_id IS NULL""", (job_id, attempt, token))

    def mark_cancel_sent(self, pairs: Sequence[tuple[int, int]], now: float) -> None:
        with self.transaction() as conn:
            conn.executemany("UPDATE attempts SET cancel_sent_at = ? WHERE job_id = ? AND attempt = ?",
                             [(now, job_id, attempt) for job_id, attempt in pairs])

    def unresolved_claims(self, run_id: str) -> list[tuple[Job, Attempt]]:
        """Attempts cancelled while claimed for submission whose claim is not resolved yet."""
        rows = self.query(
            f"""SELECT {JOB_COLUMNS}, {ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id
                WHERE j.run_id = ? AND a.state = 'CANCELLED' AND a.claim_token IS NOT NULL
                  AND a.executor_job_id IS NULL
                ORDER BY j.id, a.attempt""", (run_id,))
        return [job_and_attempt(row) for row in rows]

    def cancels_to_send(self, run_ids: Sequence[str]) -> list[tuple[Job, Attempt]]:
        """Attempts of cancelling runs that an executor holds and that were not yet told to stop."""
        if not run_ids:
            return []
        rows = self.query(
            f"""SELECT {JOB_COLUMNS}, {ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id
                JOIN runs r ON r.id = j.run_id
                WHERE j.run_id IN ({','.join('?' * len(run_ids))}) AND r.state = 'CANCELLING'
                  AND a.executor_job_id IS NOT NULL AND a.cancel_sent_at IS NULL
                  AND a.state IN ('QUEUED', 'RUNNING')
                ORDER BY j.id""", list(run_ids))
        return [job_and_attempt(row) for row in rows]

    def apply_transitions(self, transitions: Sequence[Transition], now: float) -> list[Transition]:
        """Apply observed attempt/job state changes. Each is compare-and-set on the attempt's old state
        and allowed only as the transition table says. An automatic retry of a run that is no longer
        ACTIVE (a cancel came in meanwhile) ends the job cancelled instead. Returns what took effect.
        The attempts' guarded UPDATEs, the jobs, events and run versions that follow from them are
        each written in batches (on PostgreSQL one round trip each)."""
        applied: list[Transition] = []
        job_updates: dict[str, list[tuple[Any, ...]]] = {}
        events: list[NewEvent] = []
        run_states: dict[str, str] = {}
        wanted: list[Transition] = []
        with self.transaction() as conn:
            for t in transitions:
                if not can_move(ATTEMPT_TRANSITIONS, t.old_state, t.attempt_state):
                    continue
                if t.retrying:
                    if t.run_id not in run_states:
                        run_states[t.run_id] = conn.execute("SELECT state FROM runs WHERE id = ?",
                                                            (t.run_id,)).fetchone()[0]
                    if run_states[t.run_id] != RunState.ACTIVE:
                        t = replace(t, job_state=JobState.CANCELLED, next_job_name=None, next_resources=None,
                                    failure_rule="not retried: the run is being cancelled")
                wanted.append(t)
            moved = set_attempt_states(conn, wanted)
            for t in wanted:
                if (t.job_id, t.attempt) not in moved:
                    continue
                job_from = sql_in(sources(JOB_TRANSITIONS, t.job_state))
                if t.next_job_name is not None:
                    conn.execute(f"""UPDATE jobs SET state = 'PENDING', attempt = ?, reason = ?, exit_code = ?,
                                         failure_rule = ?, updated_at = ?,
                                         max_attempts = CASE WHEN max_attempts > ? THEN max_attempts ELSE ? END,
                                         memory_retried = memory_retried + ?
                                     WHERE id = ? AND attempt = ? AND state IN {job_from}""",
                                 (t.attempt + 1, t.reason, t.exit_code, t.failure_rule, now,
                                  t.attempt + 1, t.attempt + 1, int(bool(t.next_resources)), t.job_id, t.attempt))
                    previous = conn.execute("SELECT resources FROM attempts WHERE job_id = ? AND attempt = ?",
                                            (t.job_id, t.attempt)).fetchone()[0]
                    resources = {**(json.loads(previous) if previous else {}), **(t.next_resources or {})}
                    conn.execute("""INSERT INTO attempts (job_id, attempt, job_name, resources, state)
                                    VALUES (?, ?, ?, ?, 'PENDING')""",
                                 (t.job_id, t.attempt + 1, t.next_job_name,
                                  json.dumps(resources) if resources else None))
                else:
                    job_updates.setdefault(job_from, []).append(
                        (t.job_state.value, t.reason, t.exit_code, t.failure_rule, now, t.job_id, t.attempt))
                events.append(NewEvent(transition_kind(t), t.run_id, now, t.analysis,
                                       (JobState.PENDING if t.retrying else t.job_state).value, t.attempt, t.reason))
                applied.append(t)
            for job_from, rows in job_updates.items():
                set_job_states(conn, job_from, rows)
            add_events(conn, events)
            bump_versions(conn, [t.run_id for t in applied])
        return applied

    def retry_job(self, job: Job, job_name: str, by: str, resources: dict[str, Any] | None,
                  now: float, cancel_epoch: int, expected_attempt: int | None = None) -> bool:
        """A person's retry: a new attempt of a FAILED or CANCELLED job. Compare-and-set on the job's
        (state, attempt) and on the run: a run being cancelled is never reopened, and neither is one
        cancelled after the retry was asked for (`cancel_epoch` is what the asker saw). A finished run
        is reopened; that is the explicit new action. `expected_attempt`, the attempt the person saw
        fail, is guarded in the same UPDATE: a job that moved on since is not retried again. Returns
        False when any guard fails."""
        run_from = sql_in((RunState.ACTIVE, *(s for s in sources(RUN_TRANSITIONS, RunState.ACTIVE) if s.is_finished)))
        job_from = sql_in(sources(JOB_TRANSITIONS, JobState.PENDING))
        seen, seen_args = ("", ()) if expected_attempt is None else (" AND attempt = ?", (expected_attempt,))
        try:
            with self.transaction() as conn:
                was = conn.execute("SELECT state FROM runs WHERE id = ?", (job.run_id,)).fetchone()
                cur = conn.execute(
                    f"""UPDATE runs SET finished_at = NULL, version = version + 1,
                            cancel_requested_by = CASE WHEN state = 'ACTIVE' THEN cancel_requested_by END,
                            state = 'ACTIVE'
                        WHERE id = ? AND state IN {run_from} AND cancel_epoch = ?""", (job.run_id, cancel_epoch))
                if not cur.rowcount:
                    raise Refused
                cur = conn.execute(
                    f"""UPDATE jobs SET state = 'PENDING', attempt = attempt + 1, retried_by = ?, reason = NULL,
                            exit_code = NULL, failure_rule = NULL, max_attempts = attempt + 1, updated_at = ?
                        WHERE id = ? AND attempt = ? AND state IN ('FAILED', 'CANCELLED')
                          AND state IN {job_from}{seen}""",
                    (by, now, job.id, job.attempt, *seen_args))
                if not cur.rowcount:
                    raise Refused
                previous = conn.execute("SELECT resources FROM attempts WHERE job_id = ? AND attempt = ?",
                                        (job.id, job.attempt)).fetchone()
                merged = {**(json.loads(previous[0]) if previous and previous[0] else {}), **(resources or {})}
                conn.execute("""INSERT INTO attempts (job_id, attempt, job_name, resources, state)
                                VALUES (?, ?, ?, ?, 'PENDING')""",
                             (job.id, job.attempt + 1, job_name, json.dumps(merged) if merged else None))
                if RunState(was[0]).is_finished:
                    add_events(conn, [NewEvent(EventKind.RUN_REOPENED, job.run_id, now, state=RunState.ACTIVE.value,
                                               by=by)])
                add_job_event(conn, EventKind.JOB_RETRIED, job.id, JobState.PENDING, job.attempt + 1, now, by=by)
        except Refused:
            return False
        return True

    def repair_job_states(self, run_ids: Sequence[str], now: float) -> list[tuple[str, str, str, str]]:
        """The invariant: an unfinished job is in its current attempt's state. Where a crash or a bug left
        them apart, the job takes the attempt's state. Returns (run, analysis, old, new) per repair."""
        if not run_ids:
            return []
        repaired = []
        with self.transaction() as conn:
            rows = conn.execute(
                f"""SELECT j.id, j.run_id, j.analysis, j.attempt, j.state, a.state, r.state
                    FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                    JOIN runs r ON r.id = j.run_id
                    WHERE j.run_id IN ({','.join('?' * len(run_ids))})
                      AND j.state IN ('PENDING', 'QUEUED', 'RUNNING') AND j.state != a.state
                    ORDER BY j.id""",
                list(run_ids)).fetchall()
            for job_id, run_id, analysis, attempt, job_state, attempt_state, run_state in rows:
                new = JobState(attempt_state)
                if run_state != RunState.ACTIVE and new in (JobState.PENDING, JobState.FAILED):
                    new = JobState.CANCELLED
                    conn.execute("""UPDATE attempts SET state = 'CANCELLED', reason = 'cancelled', stopped_at = ?
                                    WHERE job_id = ? AND attempt = ? AND state = 'PENDING'""", (now, job_id, attempt))
                conn.execute("UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND attempt = ? AND state = ?",
                             (new.value, now, job_id, attempt, job_state))
                add_events(conn, [NewEvent(EventKind.JOB_REPAIRED, run_id, now, analysis, new.value, attempt,
                                           f"the job was {job_state.lower()}, its attempt {attempt_state.lower()}")])
                conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (run_id,))
                repaired.append((run_id, analysis, job_state, new.value))
        return repaired


ATTEMPT_CAS = """UPDATE attempts SET state = ?, reason = ?, exit_code = ?, failure_rule = ?,
                     log_ref = COALESCE(?, log_ref), started_at = COALESCE(?, started_at), stopped_at = ?
                 WHERE job_id = ? AND attempt = ? AND state = ?"""
# PostgreSQL: the same compare-and-set for many attempts in one statement (one array per column);
# RETURNING says which moved.
ATTEMPT_CAS_ARRAYS = """UPDATE attempts AS a SET state = v.new_state, reason = v.reason, exit_code = v.exit_code,
        failure_rule = v.failure_rule, log_ref = COALESCE(v.log_ref, a.log_ref),
        started_at = COALESCE(v.started_at, a.started_at), stopped_at = v.stopped_at
    FROM unnest(CAST(? AS INTEGER[]), CAST(? AS INTEGER[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),
                CAST(? AS INTEGER[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS DOUBLE PRECISION[]),
                CAST(? AS DOUBLE PRECISION[]))
         AS v(job_id, attempt, old_state, new_state, reason, exit_code, failure_rule, log_ref, started_at, stopped_at)
    WHERE a.job_id = v.job_id AND a.attempt = v.attempt AND a.state = v.old_state
    RETURNING a.job_id, a.attempt"""


def set_attempt_states(conn: Conn, transitions: Sequence[Transition]) -> set[tuple[int, int]]:
    """Move each transition's attempt from its old state to its new one, compare-and-set; returns the
    (job_id, attempt) of those that moved. SQLite: one UPDATE each (in process, cheap); PostgreSQL:
    one UPDATE … FROM unnest(arrays) RETURNING, a round trip for all of them instead of one each."""
    rows = [(t.job_id, t.attempt, t.old_state.value, t.attempt_state.value, t.reason, t.exit_code, t.failure_rule,
             t.log_ref, t.started_at, t.stopped_at) for t in transitions]
    keys = [(t.job_id, t.attempt) for t in transitions]
    if not rows:
        return set()
    if conn.dialect != "postgresql" or len(set(keys)) != len(keys):  # (one attempt twice: one at a time)
        return {(r[0], r[1]) for r in rows if conn.execute(ATTEMPT_CAS, (*r[3:], r[0], r[1], r[2])).rowcount}
    return {(r[0], r[1]) for r in conn.execute(ATTEMPT_CAS_ARRAYS, [list(c) for c in zip(*rows, strict=True)])}


JOB_SET = """UPDATE jobs SET state = ?, reason = ?, exit_code = ?, failure_rule = COALESCE(?, failure_rule),
                 updated_at = ?
             WHERE id = ? AND attempt = ? AND state IN {job_from}"""
JOB_SET_ARRAYS = """UPDATE jobs AS j SET state = v.state, reason = v.reason, exit_code = v.exit_code,
        failure_rule = COALESCE(v.failure_rule, j.failure_rule), updated_at = v.updated_at
    FROM unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]), CAST(? AS TEXT[]),
                CAST(? AS DOUBLE PRECISION[]), CAST(? AS INTEGER[]), CAST(? AS INTEGER[]))
         AS v(state, reason, exit_code, failure_rule, updated_at, id, attempt)
    WHERE j.id = v.id AND j.attempt = v.attempt AND j.state IN {job_from}"""


def set_job_states(conn: Conn, job_from: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """(state, reason, exit_code, failure_rule, updated_at, id, attempt) per job, each guarded on the job's
    attempt and on `job_from` (an SQL list of the states it may move from)."""
    if not rows:
        return
    if conn.dialect != "postgresql":
        conn.executemany(JOB_SET.format(job_from=job_from), rows)
        return
    conn.execute(JOB_SET_ARRAYS.format(job_from=job_from), [list(c) for c in zip(*rows, strict=True)])
