"""The Slack app's tables in the run database, registered with the ledger as the component `slack`
(`Cyto.component(SLACK_SCHEMA)` creates or migrates them and hands out the handle that
handlers/slack_state.py and handlers/outbox.py work through).

Append new migrations; never edit one that has shipped. The baseline creates each table only where
it is missing: a ledger from before components already has them, made by its legacy migrations
(bot/ledger/schema.py), in exactly this shape.
"""

from __future__ import annotations

from bot.api import Component

SLACK_SCHEMA = Component("slack", (
    # 1: what Slack has been shown per run, the outbox of posts and edits, the holds of runs waiting for
    # their thread, slash-command dedupe, and each failure reply (recorded by its outbox key before it is
    # posted).
    """
    CREATE TABLE IF NOT EXISTS slack_runs (
        run_id TEXT PRIMARY KEY REFERENCES runs(id),
        rendered_version INTEGER,
        synced_version INTEGER,
        done_alert_for REAL,
        done_alert_ts TEXT
    );
    CREATE TABLE IF NOT EXISTS slack_outbox (
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
    CREATE INDEX IF NOT EXISTS slack_outbox_due ON slack_outbox(state, not_before);
    CREATE INDEX IF NOT EXISTS slack_outbox_run ON slack_outbox(run_id, kind, state);
    CREATE TABLE IF NOT EXISTS slack_holds (
        run_id TEXT PRIMARY KEY REFERENCES runs(id),
        channel TEXT NOT NULL,
        user TEXT NOT NULL,
        response_url TEXT,
        state TEXT NOT NULL,
        reason TEXT,
        created_at REAL NOT NULL,
        resolved_at REAL
    );
    CREATE TABLE IF NOT EXISTS slack_commands (
        trigger_id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        channel TEXT NOT NULL,
        text TEXT NOT NULL,
        retry_num INTEGER,
        run_id TEXT,
        received_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS slack_failures (
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
    CREATE INDEX IF NOT EXISTS slack_failures_message ON slack_failures(run_id, message_key);
    CREATE INDEX IF NOT EXISTS slack_failures_ts ON slack_failures(run_id, message_ts)
    """,
    # 2: the reporter's cursor in the ledger's durable events (the last `seq` it has planned from),
    # and the memory a failure reply suggests for a retry (bot/actions.py decides it).
    """
    CREATE TABLE slack_cursor (
        name TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    ALTER TABLE slack_failures ADD COLUMN retry_memory_mib INTEGER
    """,
))
