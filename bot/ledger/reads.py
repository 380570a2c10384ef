"""Reads of runs, jobs and attempts: plain queries, no write lock."""

from __future__ import annotations

from collections.abc import Sequence

from bot.ledger.connection import LedgerConnection
from bot.ledger.records import (
    ACTIVE_RUNS_SQL,
    ATTEMPT_COLUMNS,
    JOB_COLUMNS,
    Attempt,
    Job,
    Run,
    RunEvent,
    attempt_record,
    event_record,
    job_and_attempt,
    job_record,
    run_record,
)
from bot.states import JobState

LATEST_RUN_SQL = "SELECT * FROM runs WHERE slack_channel = ? ORDER BY created_at DESC, id LIMIT 1"  # runs_channel


class LedgerReads(LedgerConnection):
    def run(self, run_id: str) -> Run | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return run_record(rows[0]) if rows else None

    def runs(self, limit: int = 50) -> list[Run]:
        return [run_record(r) for r in self.query("SELECT * FROM runs ORDER BY created_at DESC, id LIMIT ?", (limit,))]

    def latest_run(self, channel: str) -> Run | None:
        """The latest run started in a Slack channel (one indexed read, however many runs there are)."""
        rows = self.query(LATEST_RUN_SQL, (channel,))
        return run_record(rows[0]) if rows else None

    def active_runs(self, date: str, batch: str) -> list[Run]:
        """The unfinished (ACTIVE or CANCELLING) runs of a batch, newest first."""
        return [run_record(r) for r in self.query(ACTIVE_RUNS_SQL, (date, batch))]

    def active_run(self, date: str, batch: str) -> Run | None:
        """The newest unfinished run of a batch, if any."""
        rows = self.query(ACTIVE_RUNS_SQL + " LIMIT 1", (date, batch))
        return run_record(rows[0]) if rows else None

    def unfinished_run_ids(self) -> list[str]:
        return [r[0] for r in self.query(
            "SELECT id FROM runs WHERE state IN ('ACTIVE', 'CANCELLING') ORDER BY created_at")]

    def jobs(self, run_id: str, states: Sequence[JobState] | None = None) -> list[Job]:
        sql, args = "SELECT * FROM jobs WHERE run_id = ?", [run_id]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += [s.value for s in states]
        return [job_record(r) for r in self.query(sql + " ORDER BY analysis", args)]

    def job(self, run_id: str, analysis: str) -> Job | None:
        rows = self.query("SELECT * FROM jobs WHERE run_id = ? AND analysis = ?", (run_id, analysis))
        return job_record(rows[0]) if rows else None

    def attempts(self, job_id: int) -> list[Attempt]:
        return [attempt_record(r) for r in self.query(
            "SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))]

    def attempt(self, job_id: int, attempt: int) -> Attempt | None:
        rows = self.query("SELECT * FROM attempts WHERE job_id = ? AND attempt = ?", (job_id, attempt))
        return attempt_record(rows[0]) if rows else None

    def jobs_with_attempts(self, run_id: str) -> list[tuple[Job, Attempt]]:
        """Every job of the run with its current attempt, in one query."""
        rows = self.query(
            f"""SELECT {JOB_COLUMNS}, {ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                WHERE j.run_id = ? ORDER BY j.analysis""", (run_id,))
        return [job_and_attempt(row) for row in rows]

    def counts(self, run_id: str) -> dict[JobState, int]:
        return {JobState(state): n for state, n in self.query(
            "SELECT state, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY state", (run_id,))}

    def active_attempts(self, run_ids: Sequence[str]) -> list[tuple[Job, Attempt]]:
        """The current attempt of every job that an executor holds (QUEUED or RUNNING)."""
        if not run_ids:
            return []
        rows = self.query(
            f"""SELECT {JOB_COLUMNS}, {ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                WHERE j.run_id IN ({','.join('?' * len(run_ids))}) AND j.state IN ('QUEUED', 'RUNNING')
                ORDER BY j.id""",
            list(run_ids))
        return [job_and_attempt(row) for row in rows]

    def events(self, after: int = 0, *, run_id: str | None = None, limit: int = 500) -> list[RunEvent]:
        """Events with `seq` greater than `after` (a consumer's cursor), oldest first, of one run or all."""
        sql = 'SELECT seq, run_id, kind, analysis, state, attempt, reason, "by", at FROM run_events WHERE seq > ?'
        args: list[object] = [after]
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        return [event_record(r) for r in self.query(sql + " ORDER BY seq LIMIT ?", [*args, limit])]

    def last_event_seq(self, run_id: str | None = None) -> int:
        """The newest event's `seq` (of one run, or of all), 0 when there is none: a cursor that starts now."""
        if run_id is None:
            return self.query("SELECT COALESCE(MAX(seq), 0) FROM run_events")[0][0]
        return self.query("SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = ?", (run_id,))[0][0]
