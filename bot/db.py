"""The run database: the truth about every run, job and attempt (SQLite by default, `CYTO_DB`).

Every state change happens in one transaction. Changes that two workers could race on (a retry,
a cancel, claiming an attempt for submission) are compare-and-set: the UPDATE names the state it
expects, and a rowcount of 0 means someone else acted first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bot.states import JobState, RunState

SLACK_OUTBOX_MIGRATION = """
    CREATE TABLE slack_outbox (
        key TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        kind TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread_ts TEXT,
        target_ts TEXT,
        version INTEGER,
        shown_version INTEGER,
        payload TEXT,
        state TEXT NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        uncertain INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        claim_token TEXT,
        claimed_at REAL,
        ts TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        done_at REAL
    );
    CREATE INDEX slack_outbox_due ON slack_outbox(state, not_before);
    CREATE INDEX slack_outbox_run ON slack_outbox(run_id, kind, state);
    CREATE TABLE slack_holds (
        run_id TEXT PRIMARY KEY REFERENCES runs(id),
        channel TEXT NOT NULL,
        user TEXT NOT NULL,
        response_url TEXT,
        state TEXT NOT NULL,
        reason TEXT,
        created_at REAL NOT NULL,
        resolved_at REAL
    );
    CREATE TABLE slack_commands (
        trigger_id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        channel TEXT NOT NULL,
        text TEXT NOT NULL,
        retry_num INTEGER,
        run_id TEXT,
        received_at REAL NOT NULL
    );
    CREATE TABLE slack_failures_v3 (
        run_id TEXT NOT NULL REFERENCES runs(id),
        analysis TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        message_key TEXT NOT NULL,
        message_ts TEXT,
        position INTEGER NOT NULL,
        detailed INTEGER NOT NULL,
        reason TEXT,
        exit_code INTEGER,
        excerpt TEXT,
        full_log TEXT NOT NULL,
        explanation TEXT,
        memory_mib INTEGER,
        out_of_memory INTEGER NOT NULL DEFAULT 0,
        posted_at REAL NOT NULL,
        retried_by TEXT,
        retried_shown INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, analysis, attempt)
    );
    INSERT INTO slack_failures_v3 SELECT run_id, analysis, attempt, 'ts:' || message_ts, message_ts, position,
        detailed, reason, exit_code, excerpt, full_log, explanation, memory_mib, out_of_memory, posted_at,
        retried_by, retried_shown FROM slack_failures;
    DROP TABLE slack_failures;
    ALTER TABLE slack_failures_v3 RENAME TO slack_failures;
    CREATE INDEX slack_failures_message ON slack_failures(run_id, message_key);
    CREATE INDEX slack_failures_ts ON slack_failures(run_id, message_ts)
"""

# Append new migrations; never edit one that has shipped. The schema version is len(MIGRATIONS).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        date TEXT NOT NULL,
        batch TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        resources TEXT NOT NULL,
        executor TEXT NOT NULL,
        store TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        cancel_requested_by TEXT,
        slack_channel TEXT,
        slack_thread_ts TEXT,
        version INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_state ON runs(state);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        analysis TEXT NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        reason TEXT,
        exit_code INTEGER,
        updated_at REAL NOT NULL,
        retried_by TEXT,
        UNIQUE (run_id, analysis)
    );
    CREATE INDEX jobs_run_state ON jobs(run_id, state);
    CREATE TABLE attempts (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        attempt INTEGER NOT NULL,
        job_name TEXT NOT NULL,
        resources TEXT,
        state TEXT NOT NULL,
        executor_job_id TEXT,
        claim_token TEXT,
        claimed_at REAL,
        reason TEXT,
        exit_code INTEGER,
        log_ref TEXT,
        submitted_at REAL,
        started_at REAL,
        stopped_at REAL,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE INDEX attempts_state ON attempts(state);
    """,
    # 2: what the Slack bot has shown (handlers/slack_state.py reads and writes these tables).
    """
    CREATE TABLE slack_runs (
        run_id TEXT PRIMARY KEY REFERENCES runs(id),
        rendered_version INTEGER,
        synced_version INTEGER,
        done_alert_for REAL,
        done_alert_ts TEXT
    );
    CREATE TABLE slack_failures (
        run_id TEXT NOT NULL REFERENCES runs(id),
        analysis TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        message_ts TEXT NOT NULL,
        position INTEGER NOT NULL,
        detailed INTEGER NOT NULL,
        reason TEXT,
        exit_code INTEGER,
        excerpt TEXT,
        full_log TEXT NOT NULL,
        explanation TEXT,
        memory_mib INTEGER,
        out_of_memory INTEGER NOT NULL DEFAULT 0,
        posted_at REAL NOT NULL,
        retried_by TEXT,
        retried_shown INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, analysis, attempt)
    );
    CREATE INDEX slack_failures_message ON slack_failures(run_id, message_ts);
    """,
    # 3: the Slack outbox, holds and slash-command dedupe (handlers/outbox.py, handlers/slack_state.py).
    # slack_failures is rebuilt so that a reply is recorded (by its outbox key) before it is posted.
    SLACK_OUTBOX_MIGRATION,
]
SCHEMA_VERSION = len(MIGRATIONS)


class DatabaseError(RuntimeError):
    """The run database cannot be used; the message names the file and the fix."""


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


def _run(row: Mapping[str, Any]) -> Run:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    d["resources"] = json.loads(d["resources"])
    d["state"] = RunState(d["state"])
    return Run(**d)


def _job(row: Mapping[str, Any]) -> Job:
    d = dict(row)
    d["state"] = JobState(d["state"])
    return Job(**d)


def _attempt(row: Mapping[str, Any]) -> Attempt:
    d = dict(row)
    d["state"] = JobState(d["state"])
    d["resources"] = json.loads(d["resources"]) if d["resources"] else None
    return Attempt(**d)


_JOB_FIELDS = [f.name for f in fields(Job)]
_ATTEMPT_FIELDS = [f.name for f in fields(Attempt)]
_JOB_COLUMNS = ", ".join(f"j.{name} AS j_{name}" for name in _JOB_FIELDS)
_ATTEMPT_COLUMNS = ", ".join(f"a.{name} AS a_{name}" for name in _ATTEMPT_FIELDS)


def _job_and_attempt(row: sqlite3.Row) -> tuple[Job, Attempt]:
    """Split a row selected with _JOB_COLUMNS and _ATTEMPT_COLUMNS."""
    return (_job({name: row[f"j_{name}"] for name in _JOB_FIELDS}),
            _attempt({name: row[f"a_{name}"] for name in _ATTEMPT_FIELDS}))


def sqlite_path(url: str) -> str:
    """Accept a plain path or an SQLAlchemy-style `sqlite:///path` URL."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    if "://" in url:
        raise DatabaseError(f"CYTO_DB={url!r}: only SQLite is supported (a file path or sqlite:///path)")
    return url


class RunDB:
    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._local = threading.local()
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # -- connections and transactions ---------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(os.path.expanduser(self.path), timeout=10, isolation_level=None,
                                       check_same_thread=True)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                raise self._explain(exc) from exc
            self._local.conn = conn
        return conn

    def _explain(self, exc: sqlite3.Error) -> DatabaseError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return DatabaseError(f"the run database {self.path} is locked by another process; "
                                 "wait for it or stop it, then try again (CYTO_DB)")
        if "not a database" in text or "malformed" in text:
            return DatabaseError(f"{self.path} is not a cyto-bot run database ({text}); "
                                 "point CYTO_DB at another file")
        return DatabaseError(f"run database {self.path}: {text} (CYTO_DB)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise self._explain(exc) from exc

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise DatabaseError(
                    f"the run database {self.path} has schema version {current}, newer than this "
                    f"cyto-bot understands ({SCHEMA_VERSION}); upgrade cyto-bot or use another CYTO_DB")
            for sql in MIGRATIONS[current:]:
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
            if row is None:
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # -- reads --------------------------------------------------------------------------------
    def run(self, run_id: str) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def runs(self, limit: int = 50) -> list[Run]:
        return [_run(r) for r in self._query("SELECT * FROM runs ORDER BY created_at DESC, id LIMIT ?", (limit,))]

    def unfinished_run_ids(self) -> list[str]:
        return [r[0] for r in self._query(
            "SELECT id FROM runs WHERE state IN ('ACTIVE', 'CANCELLING') ORDER BY created_at")]

    def jobs(self, run_id: str, states: Sequence[JobState] | None = None) -> list[Job]:
        sql, args = "SELECT * FROM jobs WHERE run_id = ?", [run_id]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += [s.value for s in states]
        return [_job(r) for r in self._query(sql + " ORDER BY analysis", args)]

    def job(self, run_id: str, analysis: str) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE run_id = ? AND analysis = ?", (run_id, analysis))
        return _job(rows[0]) if rows else None

    def attempts(self, job_id: int) -> list[Attempt]:
        return [_attempt(r) for r in self._query(
            "SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))]

    def attempt(self, job_id: int, attempt: int) -> Attempt | None:
        rows = self._query("SELECT * FROM attempts WHERE job_id = ? AND attempt = ?", (job_id, attempt))
        return _attempt(rows[0]) if rows else None

    def jobs_with_attempts(self, run_id: str) -> list[tuple[Job, Attempt]]:
        """Every job of the run with its current attempt, in one query."""
        rows = self._query(
            f"""SELECT {_JOB_COLUMNS}, {_ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                WHERE j.run_id = ? ORDER BY j.analysis""", (run_id,))
        return [_job_and_attempt(row) for row in rows]

    def counts(self, run_id: str) -> dict[JobState, int]:
        return {JobState(state): n for state, n in self._query(
            "SELECT state, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY state", (run_id,))}

    def active_attempts(self, run_ids: Sequence[str]) -> list[tuple[Job, Attempt]]:
        """The current attempt of every job that an executor holds (QUEUED or RUNNING)."""
        if not run_ids:
            return []
        rows = self._query(
            f"""SELECT {_JOB_COLUMNS}, {_ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                WHERE j.run_id IN ({','.join('?' * len(run_ids))}) AND j.state IN ('QUEUED', 'RUNNING')""",
            list(run_ids))
        return [_job_and_attempt(row) for row in rows]

    # -- writes -------------------------------------------------------------------------------
    def set_slack_thread(self, run_id: str, channel: str, thread_ts: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET slack_channel = ?, slack_thread_ts = ? WHERE id = ?",
                         (channel, thread_ts, run_id))

    def release_run(self, run_id: str, channel: str, thread_ts: str) -> bool:
        """End a run's hold: it gets its Slack thread and may be submitted. Acts once."""
        with self.transaction() as conn:
            cur = conn.execute("""UPDATE runs SET state = 'ACTIVE', slack_channel = ?, slack_thread_ts = ?,
                                      version = version + 1 WHERE id = ? AND state = 'HELD'""",
                               (channel, thread_ts, run_id))
            return bool(cur.rowcount)

    def abandon_run(self, run_id: str, reason: str, now: float) -> bool:
        """Give up a held run: nothing of it was submitted, every job is cancelled. Acts once."""
        with self.transaction() as conn:
            cur = conn.execute("""UPDATE runs SET state = 'CANCELLED', finished_at = ?, version = version + 1
                                  WHERE id = ? AND state = 'HELD'""", (now, run_id))
            if not cur.rowcount:
                return False
            conn.execute("""UPDATE attempts SET state = 'CANCELLED', reason = ?, stopped_at = ?
                            WHERE state = 'PENDING' AND job_id IN (SELECT id FROM jobs WHERE run_id = ?)""",
                         (reason, now, run_id))
            conn.execute("""UPDATE jobs SET state = 'CANCELLED', reason = ?, updated_at = ?
                            WHERE run_id = ? AND state = 'PENDING'""", (reason, now, run_id))
        return True

    def create_run(self, run: Run, analyses: Sequence[str], max_attempts: int,
                   job_names: Sequence[str], now: float) -> bool:
        """Record a run, one job per analysis and each job's first attempt (the intent to submit).
        Returns False when the run id is taken."""
        with self.transaction() as conn:
            try:
                conn.execute(
                    """INSERT INTO runs (id, date, batch, pipeline, params, resources, executor, store,
                       requested_by, state, created_at, slack_channel, slack_thread_ts)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (run.id, run.date, run.batch, run.pipeline, json.dumps(run.params),
                     json.dumps(run.resources), run.executor, run.store, run.requested_by, run.state.value,
                     run.created_at, run.slack_channel, run.slack_thread_ts))
            except sqlite3.IntegrityError:
                return False
            first_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs").fetchone()[0]
            conn.executemany(
                """INSERT INTO jobs (id, run_id, analysis, state, attempt, max_attempts, updated_at)
                   VALUES (?, ?, ?, 'PENDING', 1, ?, ?)""",
                [(first_id + i, run.id, a, max_attempts, now) for i, a in enumerate(analyses)])
            conn.executemany(
                "INSERT INTO attempts (job_id, attempt, job_name, state) VALUES (?, 1, ?, 'PENDING')",
                [(first_id + i, name) for i, name in enumerate(job_names)])
        return True

    def claim_pending(self, run_id: str, token: str, now: float, stale: Sequence[str],
                      limit: int) -> list[tuple[Job, Attempt]]:
        """Claim up to `limit` attempts waiting to be submitted: unclaimed ones, and ones whose claim
        is held by a token in `stale` (a process that died). Returns (job, attempt-before-claim)."""
        with self.transaction() as conn:
            stale_sql = f" OR a.claim_token IN ({','.join('?' * len(stale))})" if stale else ""
            rows = conn.execute(
                f"""SELECT {_JOB_COLUMNS}, {_ATTEMPT_COLUMNS}
                    FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                    WHERE j.run_id = ? AND j.state = 'PENDING' AND a.executor_job_id IS NULL
                      AND (a.claim_token IS NULL{stale_sql})
                    ORDER BY j.id LIMIT ?""", [run_id, *stale, limit]).fetchall()
            claimed = [_job_and_attempt(row) for row in rows]
            conn.executemany("UPDATE attempts SET claim_token = ?, claimed_at = ? WHERE job_id = ? AND attempt = ?",
                             [(token, now, job.id, job.attempt) for job, _ in claimed])
        return claimed

    def claim_tokens(self, run_id: str) -> list[str]:
        return [r[0] for r in self._query(
            """SELECT DISTINCT a.claim_token FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
               WHERE j.run_id = ? AND j.state = 'PENDING' AND a.executor_job_id IS NULL
                 AND a.claim_token IS NOT NULL""", (run_id,))]

    def record_submitted(self, run_id: str, submitted: Sequence[tuple[int, int, str]], token: str,
                         now: float) -> int:
        """Record executor job ids for claimed attempts: (job_id, attempt, executor_job_id)."""
        changed = 0
        with self.transaction() as conn:
            for job_id, attempt, executor_job_id in submitted:
                cur = conn.execute(
                    """UPDATE attempts SET executor_job_id = ?, state = 'QUEUED', submitted_at = ?
                       WHERE job_id = ? AND attempt = ? AND claim_token = ? AND executor_job_id IS NULL""",
                    (executor_job_id, now, job_id, attempt, token))
                if cur.rowcount:
                    conn.execute("""UPDATE jobs SET state = 'QUEUED', updated_at = ?
                                    WHERE id = ? AND attempt = ? AND state = 'PENDING'""", (now, job_id, attempt))
                    changed += 1
            if changed:
                conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (run_id,))
        return changed

    def record_submit_failed(self, run_id: str, job_id: int, attempt: int, token: str, reason: str,
                             now: float) -> None:
        with self.transaction() as conn:
            cur = conn.execute(
                """UPDATE attempts SET state = 'FAILED', reason = ?, stopped_at = ?
                   WHERE job_id = ? AND attempt = ? AND claim_token = ? AND executor_job_id IS NULL""",
                (reason, now, job_id, attempt, token))
            if cur.rowcount:
                conn.execute("""UPDATE jobs SET state = 'FAILED', reason = ?, updated_at = ?
                                WHERE id = ? AND attempt = ?""", (reason, now, job_id, attempt))
                conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (run_id,))

    def apply_transitions(self, transitions: Sequence[Transition], now: float) -> list[Transition]:
        """Apply attempt/job state changes; each is compare-and-set on the attempt's old state.
        Returns the transitions that took effect."""
        applied = []
        with self.transaction() as conn:
            for t in transitions:
                cur = conn.execute(
                    """UPDATE attempts SET state = ?, reason = ?, exit_code = ?,
                           log_ref = COALESCE(?, log_ref), started_at = COALESCE(?, started_at), stopped_at = ?
                       WHERE job_id = ? AND attempt = ? AND state = ?""",
                    (t.attempt_state.value, t.reason, t.exit_code, t.log_ref, t.started_at, t.stopped_at,
                     t.job_id, t.attempt, t.old_state.value))
                if not cur.rowcount:
                    continue
                if t.next_job_name is not None:
                    conn.execute("""UPDATE jobs SET state = 'PENDING', attempt = ?, reason = ?, exit_code = ?,
                                        updated_at = ? WHERE id = ? AND attempt = ?""",
                                 (t.attempt + 1, t.reason, t.exit_code, now, t.job_id, t.attempt))
                    conn.execute("""INSERT INTO attempts (job_id, attempt, job_name, resources, state)
                                    SELECT job_id, ?, ?, resources, 'PENDING' FROM attempts
                                    WHERE job_id = ? AND attempt = ?""",
                                 (t.attempt + 1, t.next_job_name, t.job_id, t.attempt))
                else:
                    conn.execute("""UPDATE jobs SET state = ?, reason = ?, exit_code = ?, updated_at = ?
                                    WHERE id = ? AND attempt = ?""",
                                 (t.job_state.value, t.reason, t.exit_code, now, t.job_id, t.attempt))
                conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (t.run_id,))
                applied.append(t)
        return applied

    def retry_job(self, job: Job, job_name: str, by: str, resources: dict[str, Any] | None,
                  now: float, reopen_run: bool = True) -> bool:
        """Start a new attempt of a FAILED or CANCELLED job. Compare-and-set on (state, attempt),
        so a double click or a duplicate delivery retries once."""
        with self.transaction() as conn:
            cur = conn.execute(
                """UPDATE jobs SET state = 'PENDING', attempt = attempt + 1, retried_by = ?, reason = NULL,
                       exit_code = NULL, max_attempts = attempt + 1, updated_at = ?
                   WHERE id = ? AND attempt = ? AND state IN ('FAILED', 'CANCELLED')""",
                (by, now, job.id, job.attempt))
            if not cur.rowcount:
                return False
            previous = conn.execute("SELECT resources FROM attempts WHERE job_id = ? AND attempt = ?",
                                    (job.id, job.attempt)).fetchone()
            conn.execute("""INSERT INTO attempts (job_id, attempt, job_name, resources, state)
                            VALUES (?, ?, ?, ?, 'PENDING')""",
                         (job.id, job.attempt + 1, job_name,
                          json.dumps(resources) if resources else (previous[0] if previous else None)))
            if reopen_run:
                conn.execute("""UPDATE runs SET state = 'ACTIVE', finished_at = NULL, cancel_requested_by = NULL
                                WHERE id = ?""", (job.run_id,))
            conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (job.run_id,))
        return True

    def request_cancel(self, run_id: str, by: str, now: float) -> bool:
        """Mark an unfinished run as cancelling and cancel its not-yet-submitted jobs. Acts once."""
        with self.transaction() as conn:
            cur = conn.execute("""UPDATE runs SET state = 'CANCELLING', cancel_requested_by = ?,
                                      version = version + 1
                                  WHERE id = ? AND state = 'ACTIVE'""", (by, run_id))
            if not cur.rowcount:
                return False
            pending = conn.execute(
                """SELECT j.id, j.attempt FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                   WHERE j.run_id = ? AND j.state = 'PENDING' AND a.executor_job_id IS NULL""",
                (run_id,)).fetchall()
            for job_id, attempt in pending:
                conn.execute("""UPDATE attempts SET state = 'CANCELLED', reason = 'cancelled', stopped_at = ?
                                WHERE job_id = ? AND attempt = ?""", (now, job_id, attempt))
                conn.execute("""UPDATE jobs SET state = 'CANCELLED', reason = 'cancelled', updated_at = ?
                                WHERE id = ?""", (now, job_id))
        return True

    def finish_run(self, run_id: str, state: RunState, now: float) -> bool:
        """Close a run whose jobs are all terminal; acts once."""
        with self.transaction() as conn:
            active = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE run_id = ? AND state IN ('PENDING', 'QUEUED', 'RUNNING')",
                (run_id,)).fetchone()[0]
            if active:
                return False
            cur = conn.execute("""UPDATE runs SET state = ?, finished_at = ?, version = version + 1
                                  WHERE id = ? AND state IN ('ACTIVE', 'CANCELLING')""",
                               (state.value, now, run_id))
            return bool(cur.rowcount)


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

    @property
    def retrying(self) -> bool:
        return self.next_job_name is not None
