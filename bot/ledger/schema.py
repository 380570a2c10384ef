"""The ledger's tables, versioned per component in `schema_versions(component, version)`.

A component is a set of tables with its own append-only migrations: `core` (runs, jobs, attempts,
run_events) belongs to the ledger; a front end registers its own (the Slack app's are in
handlers/slack_schema.py) with `RunDB(url, components=[...])` or `RunDB.ensure_schema`. A new
database gets core's migrations and then each registered component's. A file made while the whole
ledger had one version (the `schema_version` table, 1 to 5) is brought up through the frozen legacy
migrations, then recorded as core version 1; the Slack baseline recognises the tables they made.

On PostgreSQL the same migrations run, each statement translated for it (`postgres_ddl`): REAL is
DOUBLE PRECISION, an AUTOINCREMENT key an identity column, and the columns named `user` and `by`
(reserved words there) are quoted. A PostgreSQL ledger never has the legacy `schema_version` history.

Append new migrations to a component; never edit one that has shipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from bot.ledger.errors import DatabaseError


@dataclass(frozen=True)
class Component:
    """Tables that one part of the project owns. `migrations[i]` brings them to version i + 1."""

    name: str
    migrations: tuple[str, ...]

    @property
    def version(self) -> int:
        return len(self.migrations)


_LEGACY_5 = """
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

# The migrations shipped while the whole ledger had one version (the `schema_version` table, 1 to 5).
# Frozen: they bring an old file to the shape that core version 1 and the Slack baseline describe.
LEGACY_MIGRATIONS: tuple[str, ...] = (
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
    _LEGACY_5,
)

# The `schema_version` table stays, holding this value, so that a cyto-bot from before components
# refuses the file ("newer than this cyto-bot understands") instead of migrating it again.
LEGACY_DONE = len(LEGACY_MIGRATIONS) + 1
LEGACY_CORE_VERSION = 1  # what the legacy migrations leave of the core tables

CORE = Component("core", (
    # 1: the baseline, as the legacy migrations 1, 3 and 4 left runs, jobs and attempts.
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
        version INTEGER NOT NULL DEFAULT 0,
        cancel_epoch INTEGER NOT NULL DEFAULT 0,
        outputs_scoped INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_state ON runs(state);
    CREATE INDEX runs_batch ON runs(date, batch, state);
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
        failure_rule TEXT,
        memory_retried INTEGER NOT NULL DEFAULT 0,
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
        failure_rule TEXT,
        cancel_sent_at REAL,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE INDEX attempts_state ON attempts(state);
    """,
    # 2: durable events, written in the transaction of each state change (bot/ledger/events.py).
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
    # 3: the latest run of a Slack channel in one indexed read (RunDB.latest_run).
    """
    CREATE INDEX runs_channel ON runs(slack_channel, created_at DESC, id);
    """,
    # 4: poll leases: several pollers on one ledger split each cycle's runs (bot/ledger/leases.py).
    """
    CREATE TABLE run_leases (
        run_id TEXT PRIMARY KEY REFERENCES runs(id),
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
))
REQUIRED_TABLES = ("runs", "jobs", "attempts")


class Executes(Protocol):
    """A connection of the ledger (bot/ledger/sql.py), or a plain sqlite3 one while a file is made."""

    def execute(self, sql: str, args: Any = ..., /) -> Any: ...


def dialect(conn: Executes) -> str:
    return str(getattr(conn, "dialect", "sqlite"))


def statements(sql: str) -> list[str]:
    return [s for s in sql.split(";") if s.strip()]


_RESERVED_COLUMN = re.compile(r"^(\s*)(user|by)(\s)", re.MULTILINE)


def postgres_ddl(statement: str) -> str:
    """A migration statement written for SQLite, as PostgreSQL needs it."""
    statement = statement.replace("INTEGER PRIMARY KEY AUTOINCREMENT",
                                  "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    statement = re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)
    return _RESERVED_COLUMN.sub(r'\1"\2"\3', statement)


def _run(conn: Executes, migrations: tuple[str, ...]) -> None:
    postgres = dialect(conn) == "postgresql"
    for sql in migrations:
        for statement in statements(sql):
            conn.execute(postgres_ddl(statement) if postgres else statement)


def tables(conn: Executes) -> set[str]:
    if dialect(conn) == "postgresql":
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def component_versions(conn: Executes) -> dict[str, int]:
    """The recorded version of each component."""
    return {r[0]: int(r[1]) for r in conn.execute("SELECT component, version FROM schema_versions ORDER BY component")}


def _set_version(conn: Executes, component: Component) -> None:
    conn.execute("""INSERT INTO schema_versions (component, version) VALUES (?, ?)
                    ON CONFLICT (component) DO UPDATE SET version = excluded.version""",
                 (component.name, component.version))


def create_schema(conn: Executes) -> None:
    """Every core table of a new ledger, inside the caller's transaction."""
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (LEGACY_DONE,))
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    _run(conn, CORE.migrations)
    _set_version(conn, CORE)


def migrate(conn: Executes, path: str) -> None:
    """Bring the core tables to CORE.version inside the caller's transaction, or refuse a database that
    is not a ledger, is damaged, or is newer than this code. An empty PostgreSQL database (or SQLite
    in memory) becomes a new ledger."""
    present = tables(conn)
    if not present and (path == ":memory:" or dialect(conn) == "postgresql"):
        create_schema(conn)
        return
    _migrate(conn, path, present)


def _migrate(conn: Executes, path: str, present: set[str]) -> None:
    if "schema_version" not in present and "schema_versions" not in present:
        held = f"holds the tables {', '.join(sorted(present)[:5])}" if present else "has no tables"
        raise DatabaseError(f"{path} is not a cyto-bot run database (it {held} and no "
                            "schema_version); point CYTO_DB at another file, or delete an empty one")
    if "schema_version" in present:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        legacy = row[0] if row else 0
        if legacy > LEGACY_DONE:
            raise DatabaseError(
                f"the run database {path} has schema version {legacy}, newer than this "
                f"cyto-bot understands ({LEGACY_DONE}); upgrade cyto-bot or use another CYTO_DB")
        if legacy < LEGACY_DONE:
            _upgrade_legacy(conn, path, present, legacy, row is not None)
            present = tables(conn)
    if "schema_versions" not in present:
        raise DatabaseError(f"the run database {path} is damaged (no schema_versions table); "
                            "restore it from a backup (CYTO_DB)")
    current = _check_version(conn, path, CORE)
    if not present.issuperset(REQUIRED_TABLES):
        missing = ", ".join(t for t in REQUIRED_TABLES if t not in present)
        raise DatabaseError(f"the run database {path} is damaged (schema version {current} "
                            f"but no {missing} table); restore it from a backup (CYTO_DB)")
    _run(conn, CORE.migrations[current:])
    if current != CORE.version:
        _set_version(conn, CORE)


def _upgrade_legacy(conn: Executes, path: str, tables: set[str], legacy: int, has_row: bool) -> None:
    if legacy and not tables.issuperset(REQUIRED_TABLES):
        missing = ", ".join(t for t in REQUIRED_TABLES if t not in tables)
        raise DatabaseError(f"the run database {path} is damaged (schema version {legacy} "
                            f"but no {missing} table); restore it from a backup (CYTO_DB)")
    _run(conn, LEGACY_MIGRATIONS[legacy:])
    if has_row:
        conn.execute("UPDATE schema_version SET version = ?", (LEGACY_DONE,))
    else:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (LEGACY_DONE,))
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_versions (component, version) VALUES (?, ?)", (CORE.name, LEGACY_CORE_VERSION))


def _check_version(conn: Executes, path: str, component: Component) -> int:
    """The component's recorded version (0 when it has none); refused when newer than this code."""
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component.name,)).fetchone()
    current = row[0] if row else 0
    if current > component.version:
        raise DatabaseError(
            f"the run database {path} ({component.name} tables) has schema version {current}, newer than "
            f"this cyto-bot understands ({component.version}); upgrade cyto-bot or use another CYTO_DB")
    return int(current)


def ensure(conn: Executes, path: str, component: Component) -> None:
    """Bring a registered component's tables to its version inside the caller's transaction."""
    current = _check_version(conn, path, component)
    if current < component.version:
        _run(conn, component.migrations[current:])
        _set_version(conn, component)
