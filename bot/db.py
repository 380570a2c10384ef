"""The run database: the truth about every run, job and attempt (SQLite by default, `CYTO_DB`).

Every state change happens in one transaction. Changes that two workers could race on (a retry,
a cancel, claiming an attempt for submission) are compare-and-set: the UPDATE names the state it
expects, and a rowcount of 0 means someone else acted first.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.states import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    RUN_TRANSITIONS,
    JobState,
    RunState,
    can_move,
    sources,
    sql_in,
)

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
        rule TEXT,
        PRIMARY KEY (run_id, analysis, attempt)
    );
    INSERT INTO slack_failures_v3 SELECT run_id, analysis, attempt, 'ts:' || message_ts, message_ts, position,
        detailed, reason, exit_code, excerpt, full_log, explanation, memory_mib, out_of_memory, posted_at,
        retried_by, retried_shown, NULL FROM slack_failures;
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
    # 3: guarded cancels and the failure policy (bot/states.py, bot/failure_policy.py).
    """
    ALTER TABLE runs ADD COLUMN cancel_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN failure_rule TEXT;
    ALTER TABLE jobs ADD COLUMN memory_retried INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attempts ADD COLUMN failure_rule TEXT;
    ALTER TABLE attempts ADD COLUMN cancel_sent_at REAL;
    """,
    # 4: a run started while another run of its batch was unfinished keeps its outputs apart.
    """
    ALTER TABLE runs ADD COLUMN outputs_scoped INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_batch ON runs(date, batch, state);
    """,
    # 5: the Slack outbox, holds and slash-command dedupe (handlers/outbox.py, handlers/slack_state.py).
    # slack_failures is rebuilt so that a reply is recorded (by its outbox key) before it is posted.
    SLACK_OUTBOX_MIGRATION,
]
SCHEMA_VERSION = len(MIGRATIONS)


# A row as sqlite3 returns it, or a plain mapping of column to value.
Row = sqlite3.Row | Mapping[str, Any]


class DatabaseError(RuntimeError):
    """The run database cannot be used; the message names the file and the fix."""


class BatchBusy(Exception):
    """A run was refused because another run of the same batch is unfinished (`active`)."""

    def __init__(self, active: Run) -> None:
        super().__init__(f"run {active.id} of {active.label} is still active")
        self.active = active


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


def _as_dict(row: Row) -> dict[str, Any]:
    return {key: row[key] for key in row.keys()}  # noqa: SIM118 - iterating a sqlite3.Row gives its values


def _run(row: Row) -> Run:
    d = _as_dict(row)
    d["params"] = json.loads(d["params"])
    d["resources"] = json.loads(d["resources"])
    d["state"] = RunState(d["state"])
    d["outputs_scoped"] = bool(d["outputs_scoped"])
    return Run(**d)


def _job(row: Row) -> Job:
    d = _as_dict(row)
    d["state"] = JobState(d["state"])
    return Job(**d)


def _attempt(row: Row) -> Attempt:
    d = _as_dict(row)
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


_ACTIVE_RUNS_SQL = """SELECT * FROM runs WHERE date = ? AND batch = ? AND state IN ('HELD', 'ACTIVE', 'CANCELLING')
                      ORDER BY created_at DESC, id"""


def sqlite_path(url: str) -> str:
    """Accept a plain path or an SQLAlchemy-style `sqlite:///path` URL."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    if "://" in url:
        raise DatabaseError(f"CYTO_DB={url!r}: only SQLite is supported (a file path or sqlite:///path)")
    return url


SQLITE_HEADER = b"SQLite format 3\x00"
_REQUIRED_TABLES = ("runs", "jobs", "attempts")
FileIdentity = tuple[int, int]  # (st_dev, st_ino): which file a path named when it was opened


class RunDB:
    """The run database. A file that exists must already be a cyto-bot ledger (it is never rebuilt
    empty); a new one is created only when the file does not exist, complete or not at all. Every
    connection checks that the path still names the file opened at start: a ledger deleted or
    replaced under a running process stops its writes instead of splitting it in two."""

    # Class-level defaults keep a RunDB built with __new__ (a test of the locked case) usable.
    _identity: FileIdentity | None = None
    _lost: DatabaseError | None = None

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._local = threading.local()
        if self.path != ":memory:":
            self._absolute = os.path.abspath(os.path.expanduser(self.path))  # a later chdir changes nothing
            file = Path(self._absolute)
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the folder of the run database {self.path}: "
                                    f"{exc.strerror}; point CYTO_DB at a writable path") from exc
            if not file.exists():
                self._refuse_orphaned_log(file)
                self._create(file)
            self._check_header(file)
            self._identity = self._current_identity()
        self._migrate()
        try:  # only now that the file is known to be ours (a ledger keeps this setting)
            self._conn().execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc

    # -- opening, creating and recognising the file -------------------------------------------
    def _file(self) -> str:
        return getattr(self, "_absolute", None) or os.path.abspath(os.path.expanduser(self.path))

    def _current_identity(self) -> FileIdentity | None:
        try:
            st = os.stat(self._file())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatabaseError(f"cannot read the run database {self.path}: {exc.strerror} (CYTO_DB)") from exc
        return (st.st_dev, st.st_ino)

    def _create(self, file: Path) -> None:
        """Build a new, fully migrated ledger beside `file` and link it into place, so that no
        process ever sees a half-made database (and two starting at once agree on one file)."""
        tmp = file.with_name(f".{file.name}.new-{os.getpid()}-{threading.get_ident()}")
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                for sql in MIGRATIONS:
                    for statement in filter(str.strip, sql.split(";")):
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                os.link(tmp, file)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot create the run database {self.path}: {exc}; "
                                "point CYTO_DB at a writable path") from exc
        except OSError as exc:
            raise DatabaseError(f"cannot create the run database {self.path}: {exc.strerror}; "
                                "point CYTO_DB at a writable path") from exc
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _refuse_orphaned_log(self, file: Path) -> None:
        """A write-ahead log without its database is what is left of a ledger deleted or moved away.
        SQLite would replay it into a new file of the same name; refuse instead."""
        for suffix in ("-wal", "-journal"):
            log = file.with_name(file.name + suffix)
            if log.exists() and log.stat().st_size > 0:
                raise DatabaseError(
                    f"the run database {self.path} is missing but its {log.name} is still there: the "
                    f"database was deleted or moved. Restore it beside {log.name}, or delete {log.name} "
                    "(and any -shm file) to start a new ledger (CYTO_DB)")

    def _check_header(self, file: Path) -> None:
        try:
            with open(file, "rb") as fh:
                header = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise DatabaseError(f"cannot read the run database {self.path}: {exc.strerror} (CYTO_DB)") from exc
        if not header:
            raise DatabaseError(
                f"{self.path} is an empty file, not a cyto-bot run database (a ledger whose data was lost?); "
                "restore it from a backup, or delete it to start a new ledger (CYTO_DB)")
        if header != SQLITE_HEADER:
            raise DatabaseError(f"{self.path} is not a cyto-bot run database (not an SQLite file); "
                                "point CYTO_DB at another file")

    def _check_identity(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._identity is None:
            return
        now = self._current_identity()
        if now == self._identity:
            return
        if now is None:
            what = "was deleted while this process was using it"
            fix = "restore the file from a backup, then restart cyto-bot"
        else:
            what = "was replaced by another file while this process was using it"
            fix = "restart cyto-bot to use the new file, or put the old one back"
        self._lost = DatabaseError(f"the run database {self.path} {what}; this process has stopped "
                                   f"recording anything. {fix} (CYTO_DB)")
        raise self._lost

    # -- connections and transactions ---------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        self._check_identity()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                if self.path == ":memory:":
                    conn = sqlite3.connect(":memory:", isolation_level=None)
                else:
                    # mode=rw: a connection opened later never creates an empty file in place of a lost one.
                    uri = f"file:{quote(self._file())}?mode=rw"
                    conn = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None,
                                           check_same_thread=True)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                self._check_identity()  # "unable to open" because the file is gone says so
                raise self._explain(exc) from exc
            self._local.conn = conn
            self._check_identity()  # the file opened is the one checked at start
        return conn

    def _explain(self, exc: sqlite3.Error) -> DatabaseError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return DatabaseError(f"the run database {self.path} is locked by another process; "
                                 "wait for it or stop it, then try again (CYTO_DB)")
        if "not a database" in text:
            return DatabaseError(f"{self.path} is not a cyto-bot run database ({text}); "
                                 "point CYTO_DB at another file")
        if "malformed" in text or "corrupt" in text:
            return DatabaseError(f"the run database {self.path} is damaged ({text}); restore it from a "
                                 "backup, or point CYTO_DB at another file")
        if "readonly" in text or "read-only" in text:
            return DatabaseError(f"the run database {self.path} is read-only ({text}); make the file "
                                 "and its folder writable (CYTO_DB)")
        if "disk" in text or "full" in text:
            return DatabaseError(f"the run database {self.path} cannot be written ({text}); check the "
                                 "disk and its free space (CYTO_DB)")
        if "unable to open" in text:
            return DatabaseError(f"cannot open the run database {self.path} ({text}); check that the "
                                 "file and its folder exist and are readable (CYTO_DB)")
        return DatabaseError(f"the run database {self.path} failed: {text}; if this repeats, the file "
                             "may be damaged or not cyto-bot's (CYTO_DB)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Any sqlite3 error inside it (statement or commit) rolls it back
        and is raised as a DatabaseError; errors the body catches itself stay its own."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._explain(exc) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise self._explain(exc) from exc
        self._check_identity()  # a commit into a file deleted meanwhile is not kept: say so

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        conn = self._conn()
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc

    def _migrate(self) -> None:
        with self.transaction() as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if self.path == ":memory:" and not tables:
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                tables.add("schema_version")
            if "schema_version" not in tables:
                held = f"holds the tables {', '.join(sorted(tables)[:5])}" if tables else "has no tables"
                raise DatabaseError(f"{self.path} is not a cyto-bot run database (it {held} and no "
                                    "schema_version); point CYTO_DB at another file, or delete an empty one")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise DatabaseError(
                    f"the run database {self.path} has schema version {current}, newer than this "
                    f"cyto-bot understands ({SCHEMA_VERSION}); upgrade cyto-bot or use another CYTO_DB")
            if current and not tables.issuperset(_REQUIRED_TABLES):
                missing = ", ".join(t for t in _REQUIRED_TABLES if t not in tables)
                raise DatabaseError(f"the run database {self.path} is damaged (schema version {current} "
                                    f"but no {missing} table); restore it from a backup (CYTO_DB)")
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

    def active_runs(self, date: str, batch: str) -> list[Run]:
        """The unfinished (ACTIVE or CANCELLING) runs of a batch, newest first."""
        return [_run(r) for r in self._query(_ACTIVE_RUNS_SQL, (date, batch))]

    def active_run(self, date: str, batch: str) -> Run | None:
        """The newest unfinished run of a batch, if any."""
        rows = self._query(_ACTIVE_RUNS_SQL + " LIMIT 1", (date, batch))
        return _run(rows[0]) if rows else None

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
    # Each write is a compare-and-set whose guard comes from the transition tables in bot/states.py.
    def set_slack_thread(self, run_id: str, channel: str, thread_ts: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET slack_channel = ?, slack_thread_ts = ? WHERE id = ?",
                         (channel, thread_ts, run_id))

    def release_run(self, run_id: str, channel: str, thread_ts: str) -> bool:
        """End a run's hold: it gets its Slack thread and may be submitted. Acts once."""
        with self.transaction() as conn:
            assert can_move(RUN_TRANSITIONS, RunState.HELD, RunState.ACTIVE)
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
                   job_names: Sequence[str], now: float, *, allow_concurrent: bool = False) -> bool:
        """Record a run, one job per analysis and each job's first attempt (the intent to submit).
        Returns False when the run id is taken. Raises BatchBusy when another run of the batch is
        unfinished, unless `allow_concurrent`; then the new run's outputs are scoped to it."""
        with self.transaction() as conn:
            active = conn.execute(_ACTIVE_RUNS_SQL + " LIMIT 1", (run.date, run.batch)).fetchone()
            if active is not None and not allow_concurrent:
                raise BatchBusy(_run(active))
            try:
                conn.execute(
                    """INSERT INTO runs (id, date, batch, pipeline, params, resources, executor, store,
                       requested_by, state, created_at, slack_channel, slack_thread_ts, outputs_scoped)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (run.id, run.date, run.batch, run.pipeline, json.dumps(run.params),
                     json.dumps(run.resources), run.executor, run.store, run.requested_by, run.state.value,
                     run.created_at, run.slack_channel, run.slack_thread_ts, int(active is not None)))
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
        is held by a token in `stale` (a process that died, or a pass of this process that ended
        without recording). Returns (job, attempt-before-claim); a claimed-before attempt may already be
        with the executor, so the caller looks it up by name before submitting it."""
        with self.transaction() as conn:
            stale_sql = f" OR a.claim_token IN ({','.join('?' * len(stale))})" if stale else ""
            rows = conn.execute(
                f"""SELECT {_JOB_COLUMNS}, {_ATTEMPT_COLUMNS}
                    FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                    JOIN runs r ON r.id = j.run_id
                    WHERE j.run_id = ? AND r.state = 'ACTIVE' AND j.state = 'PENDING' AND a.state = 'PENDING'
                      AND a.executor_job_id IS NULL AND (a.claim_token IS NULL{stale_sql})
                    ORDER BY j.id LIMIT ?""", [run_id, *stale, limit]).fetchall()
            claimed = [_job_and_attempt(row) for row in rows]
            conn.executemany("UPDATE attempts SET claim_token = ?, claimed_at = ? WHERE job_id = ? AND attempt = ?",
                             [(token, now, job.id, job.attempt) for job, _ in claimed])
        return claimed

    def claim_tokens(self, run_id: str) -> list[str]:
        """Tokens holding a claim that is not resolved yet: on an attempt waiting to be submitted, or on
        one cancelled while it was being submitted (its job may exist at the executor)."""
        return [r[0] for r in self._query(
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
        with self.transaction() as conn:
            for job_id, attempt, executor_job_id in submitted:
                cur = conn.execute(
                    f"""UPDATE attempts SET executor_job_id = ?, state = 'QUEUED', submitted_at = ?
                        WHERE job_id = ? AND attempt = ? AND claim_token = ? AND executor_job_id IS NULL
                          AND state IN {attempt_from}""",
                    (executor_job_id, now, job_id, attempt, token))
                if not cur.rowcount:
                    lost.append((job_id, attempt, executor_job_id))
                    continue
                conn.execute(f"""UPDATE jobs SET state = 'QUEUED', updated_at = ?
                                 WHERE id = ? AND attempt = ? AND state IN {job_from}""", (now, job_id, attempt))
                changed += 1
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
        rows = self._query(
            f"""SELECT {_JOB_COLUMNS}, {_ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id
                WHERE j.run_id = ? AND a.state = 'CANCELLED' AND a.claim_token IS NOT NULL
                  AND a.executor_job_id IS NULL""", (run_id,))
        return [_job_and_attempt(row) for row in rows]

    def cancels_to_send(self, run_ids: Sequence[str]) -> list[tuple[Job, Attempt]]:
        """Attempts of cancelling runs that an executor holds and that were not yet told to stop."""
        if not run_ids:
            return []
        rows = self._query(
            f"""SELECT {_JOB_COLUMNS}, {_ATTEMPT_COLUMNS}
                FROM jobs j JOIN attempts a ON a.job_id = j.id
                JOIN runs r ON r.id = j.run_id
                WHERE j.run_id IN ({','.join('?' * len(run_ids))}) AND r.state = 'CANCELLING'
                  AND a.executor_job_id IS NOT NULL AND a.cancel_sent_at IS NULL
                  AND a.state IN ('QUEUED', 'RUNNING')""", list(run_ids))
        return [_job_and_attempt(row) for row in rows]

    def apply_transitions(self, transitions: Sequence[Transition], now: float) -> list[Transition]:
        """Apply observed attempt/job state changes. Each is compare-and-set on the attempt's old state
        and allowed only as the transition table says. An automatic retry of a run that is no longer
        ACTIVE (a cancel came in meanwhile) ends the job cancelled instead. Returns what took effect."""
        applied = []
        with self.transaction() as conn:
            for t in transitions:
                if not can_move(ATTEMPT_TRANSITIONS, t.old_state, t.attempt_state):
                    continue
                if t.retrying and conn.execute("SELECT state FROM runs WHERE id = ?",
                                               (t.run_id,)).fetchone()[0] != RunState.ACTIVE:
                    t = replace(t, job_state=JobState.CANCELLED, next_job_name=None, next_resources=None,
                                failure_rule="not retried: the run is being cancelled")
                job_from = sql_in(sources(JOB_TRANSITIONS, t.job_state))
                cur = conn.execute(
                    """UPDATE attempts SET state = ?, reason = ?, exit_code = ?, failure_rule = ?,
                           log_ref = COALESCE(?, log_ref), started_at = COALESCE(?, started_at), stopped_at = ?
                       WHERE job_id = ? AND attempt = ? AND state = ?""",
                    (t.attempt_state.value, t.reason, t.exit_code, t.failure_rule, t.log_ref, t.started_at,
                     t.stopped_at, t.job_id, t.attempt, t.old_state.value))
                if not cur.rowcount:
                    continue
                if t.next_job_name is not None:
                    conn.execute(f"""UPDATE jobs SET state = 'PENDING', attempt = ?, reason = ?, exit_code = ?,
                                         failure_rule = ?, updated_at = ?,
                                         max_attempts = MAX(max_attempts, ?),
                                         memory_retried = memory_retried + ?
                                     WHERE id = ? AND attempt = ? AND state IN {job_from}""",
                                 (t.attempt + 1, t.reason, t.exit_code, t.failure_rule, now,
                                  t.attempt + 1, int(bool(t.next_resources)), t.job_id, t.attempt))
                    previous = conn.execute("SELECT resources FROM attempts WHERE job_id = ? AND attempt = ?",
                                            (t.job_id, t.attempt)).fetchone()[0]
                    resources = {**(json.loads(previous) if previous else {}), **(t.next_resources or {})}
                    conn.execute("""INSERT INTO attempts (job_id, attempt, job_name, resources, state)
                                    VALUES (?, ?, ?, ?, 'PENDING')""",
                                 (t.job_id, t.attempt + 1, t.next_job_name,
                                  json.dumps(resources) if resources else None))
                else:
                    conn.execute(f"""UPDATE jobs SET state = ?, reason = ?, exit_code = ?,
                                         failure_rule = COALESCE(?, failure_rule), updated_at = ?
                                     WHERE id = ? AND attempt = ? AND state IN {job_from}""",
                                 (t.job_state.value, t.reason, t.exit_code, t.failure_rule, now, t.job_id,
                                  t.attempt))
                conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (t.run_id,))
                applied.append(t)
        return applied

    def retry_job(self, job: Job, job_name: str, by: str, resources: dict[str, Any] | None,
                  now: float, cancel_epoch: int) -> bool:
        """A person's retry: a new attempt of a FAILED or CANCELLED job. Compare-and-set on the job's
        (state, attempt) and on the run: a run being cancelled is never reopened, and neither is one
        cancelled after the retry was asked for (`cancel_epoch` is what the asker saw). A finished run
        is reopened; that is the explicit new action. Returns False when any guard fails."""
        run_from = sql_in((RunState.ACTIVE, *(s for s in sources(RUN_TRANSITIONS, RunState.ACTIVE) if s.is_finished)))
        job_from = sql_in(sources(JOB_TRANSITIONS, JobState.PENDING))
        try:
            with self.transaction() as conn:
                cur = conn.execute(
                    f"""UPDATE runs SET finished_at = NULL, version = version + 1,
                            cancel_requested_by = CASE WHEN state = 'ACTIVE' THEN cancel_requested_by END,
                            state = 'ACTIVE'
                        WHERE id = ? AND state IN {run_from} AND cancel_epoch = ?""", (job.run_id, cancel_epoch))
                if not cur.rowcount:
                    raise _Refused
                cur = conn.execute(
                    f"""UPDATE jobs SET state = 'PENDING', attempt = attempt + 1, retried_by = ?, reason = NULL,
                            exit_code = NULL, failure_rule = NULL, max_attempts = attempt + 1, updated_at = ?
                        WHERE id = ? AND attempt = ? AND state IN ('FAILED', 'CANCELLED')
                          AND state IN {job_from}""",
                    (by, now, job.id, job.attempt))
                if not cur.rowcount:
                    raise _Refused
                previous = conn.execute("SELECT resources FROM attempts WHERE job_id = ? AND attempt = ?",
                                        (job.id, job.attempt)).fetchone()
                merged = {**(json.loads(previous[0]) if previous and previous[0] else {}), **(resources or {})}
                conn.execute("""INSERT INTO attempts (job_id, attempt, job_name, resources, state)
                                VALUES (?, ?, ?, ?, 'PENDING')""",
                             (job.id, job.attempt + 1, job_name, json.dumps(merged) if merged else None))
        except _Refused:
            return False
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
            return bool(cur.rowcount)

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
                      AND j.state IN ('PENDING', 'QUEUED', 'RUNNING') AND j.state != a.state""",
                list(run_ids)).fetchall()
            for job_id, run_id, analysis, attempt, job_state, attempt_state, run_state in rows:
                new = JobState(attempt_state)
                if run_state != RunState.ACTIVE and new in (JobState.PENDING, JobState.FAILED):
                    new = JobState.CANCELLED
                    conn.execute("""UPDATE attempts SET state = 'CANCELLED', reason = 'cancelled', stopped_at = ?
                                    WHERE job_id = ? AND attempt = ? AND state = 'PENDING'""", (now, job_id, attempt))
                conn.execute("UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND attempt = ? AND state = ?",
                             (new.value, now, job_id, attempt, job_state))
                conn.execute("UPDATE runs SET version = version + 1 WHERE id = ?", (run_id,))
                repaired.append((run_id, analysis, job_state, new.value))
        return repaired


class _Refused(Exception):
    """Rolls a compare-and-set transaction back when one of its guards fails."""


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back after a failure; a connection too broken to roll back has nothing to keep."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


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
