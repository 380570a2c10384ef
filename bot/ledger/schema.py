"""The ledger's tables: the shipped migrations and the check that a file is a ledger this code can use.

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

from bot.ledger.errors import DatabaseError

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

# The schema version is len(MIGRATIONS).
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
    # 6: durable events, written in the transaction of each state change (bot/ledger/events.py).
    """
    CREATE TABLE run_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(id),
        kind TEXT NOT NULL,
        analysis TEXT,
        state TEXT,
        attempt INTEGER,
        reason TEXT,
        by TEXT,
        at REAL NOT NULL
    );
    CREATE INDEX run_events_run ON run_events(run_id, seq);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
REQUIRED_TABLES = ("runs", "jobs", "attempts")


def statements(sql: str) -> list[str]:
    return [s for s in sql.split(";") if s.strip()]


def create_schema(conn: sqlite3.Connection) -> None:
    """Every table of a new ledger, inside the caller's transaction."""
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for sql in MIGRATIONS:
        for statement in statements(sql):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the ledger to SCHEMA_VERSION inside the caller's transaction, or refuse a file that is not
    a ledger, is damaged, or is newer than this code."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if path == ":memory:" and not tables:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        tables.add("schema_version")
    if "schema_version" not in tables:
        held = f"holds the tables {', '.join(sorted(tables)[:5])}" if tables else "has no tables"
        raise DatabaseError(f"{path} is not a cyto-bot run database (it {held} and no "
                            "schema_version); point CYTO_DB at another file, or delete an empty one")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    current = row[0] if row else 0
    if current > SCHEMA_VERSION:
        raise DatabaseError(
            f"the run database {path} has schema version {current}, newer than this "
            f"cyto-bot understands ({SCHEMA_VERSION}); upgrade cyto-bot or use another CYTO_DB")
    if current and not tables.issuperset(REQUIRED_TABLES):
        missing = ", ".join(t for t in REQUIRED_TABLES if t not in tables)
        raise DatabaseError(f"the run database {path} is damaged (schema version {current} "
                            f"but no {missing} table); restore it from a backup (CYTO_DB)")
    for sql in MIGRATIONS[current:]:
        for statement in statements(sql):
            conn.execute(statement)
    if row is None:
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    else:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
