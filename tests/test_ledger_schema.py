"""Schemas per component: a new ledger and one brought up from any legacy version end with the same
tables; the Slack tables are the Slack app's to register; a component newer than the code is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.ledger import CORE, DatabaseError, Run, RunDB
from bot.ledger.reads import LATEST_RUN_SQL
from bot.ledger.schema import LEGACY_DONE, LEGACY_MIGRATIONS, statements
from bot.states import RunState
from handlers.slack_schema import SLACK_SCHEMA

Schema = dict[str, object]


def schema(path: Path) -> Schema:
    """Every table's columns, indexes and foreign keys, and the schema versions: the shape of the
    database, whatever text made it (an ALTER TABLE, a rebuilt table, IF NOT EXISTS)."""
    conn = sqlite3.connect(path)
    try:
        tables = sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'"))
        shape: Schema = {}
        for table in tables:
            indexes = {}
            for _, name, unique, origin, _partial in conn.execute(f"PRAGMA index_list({table})"):
                columns = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
                indexes[name if origin == "c" else f"({origin}) {columns}"] = (unique, columns)
            shape[table] = {
                "columns": [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")],
                "indexes": indexes,
                "foreign_keys": sorted(tuple(r[2:5]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")),
            }
        shape["versions"] = sorted(conn.execute("SELECT component, version FROM schema_versions"))
        shape["legacy marker"] = conn.execute("SELECT version FROM schema_version").fetchall()
        return shape
    finally:
        conn.close()


def legacy_ledger(path: Path, version: int) -> None:
    """A ledger as cyto-bot wrote it while the whole schema had one version (1 to 5), with a run in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for sql in LEGACY_MIGRATIONS[:version]:
        for statement in statements(sql):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    conn.execute("""INSERT INTO runs (id, date, batch, pipeline, params, resources, executor, store, requested_by,
                    state, created_at) VALUES ('old', '2018-12-05', 'b7', 'wordcount', '{}', '{}', 'local', '/s',
                    'alice', 'SUCCEEDED', 1.0)""")
    conn.execute("""INSERT INTO jobs (id, run_id, analysis, state, attempt, max_attempts, updated_at)
                    VALUES (1, 'old', 'A000', 'SUCCEEDED', 1, 1, 1.0)""")
    conn.close()


@pytest.mark.parametrize("version", range(1, len(LEGACY_MIGRATIONS) + 1))
def test_a_legacy_ledger_is_brought_to_the_same_schema_as_a_new_one(tmp_path: Path, version: int) -> None:
    fresh, old = tmp_path / "fresh.sqlite", tmp_path / "old.sqlite"
    RunDB(str(fresh), components=[SLACK_SCHEMA])
    legacy_ledger(old, version)
    db = RunDB(str(old), components=[SLACK_SCHEMA])
    assert schema(old) == schema(fresh)
    assert schema(fresh)["versions"] == [("core", CORE.version), ("slack", SLACK_SCHEMA.version)]
    assert db.run("old").state == RunState.SUCCEEDED and db.job("old", "A000").state == "SUCCEEDED"
    assert RunDB(str(old)).run("old") is not None  # opened again: nothing left to migrate
    assert schema(old) == schema(fresh)


def test_a_legacy_ledger_opened_without_slack_gets_its_slack_tables_recognised_later(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.sqlite", tmp_path / "fresh.sqlite"
    legacy_ledger(old, len(LEGACY_MIGRATIONS))
    RunDB(str(old))  # `cyto runs`: core only; the legacy migrations made the Slack tables already
    assert schema(old)["versions"] == [("core", CORE.version)]
    RunDB(str(old)).ensure_schema(SLACK_SCHEMA)
    RunDB(str(fresh), components=[SLACK_SCHEMA])
    assert schema(old) == schema(fresh)


def test_a_new_ledger_has_only_the_core_tables_until_slack_registers_its_own(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    db = RunDB(str(path))
    shape = schema(path)
    assert sorted(t for t in shape if not t.startswith(("schema", "versions", "legacy"))) == [
        "attempts", "jobs", "run_events", "run_leases", "runs"]
    assert shape["versions"] == [("core", CORE.version)]
    assert shape["legacy marker"] == [(LEGACY_DONE,)]  # what makes a cyto-bot from before components refuse it
    db.ensure_schema(SLACK_SCHEMA)
    db.ensure_schema(SLACK_SCHEMA)
    assert {t for t in schema(path) if t.startswith("slack_")} == {
        "slack_runs", "slack_outbox", "slack_holds", "slack_commands", "slack_failures", "slack_cursor"}


def test_an_in_memory_ledger_gets_the_same_tables(tmp_path: Path) -> None:
    memory = RunDB(":memory:", components=[SLACK_SCHEMA])
    file = tmp_path / "runs.sqlite"
    RunDB(str(file), components=[SLACK_SCHEMA])
    names = {r[0] for r in memory.query("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    with sqlite3.connect(file) as conn:
        assert names == {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    conn.close()


@pytest.mark.parametrize("component", ["core", "slack"])
def test_a_component_newer_than_the_code_is_refused_in_one_line_naming_it(tmp_path: Path, component: str) -> None:
    path = tmp_path / "runs.sqlite"
    RunDB(str(path), components=[SLACK_SCHEMA])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_versions SET version = 42 WHERE component = ?", (component,))
    conn.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError) as refused:
        RunDB(str(path), components=[SLACK_SCHEMA])
    message = str(refused.value)
    assert f"({component} tables) has schema version 42, newer than this cyto-bot understands" in message
    assert "\n" not in message
    assert path.read_bytes() == before


def test_a_ledger_upgraded_from_legacy_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    legacy_ledger(path, 3)
    db = RunDB(str(path))
    run = Run(id="new", date="2018-12-05", batch="b8", pipeline="wordcount", params={}, resources={},
              executor="local", store="/s", requested_by="bob", state=RunState.ACTIVE, created_at=2.0,
              finished_at=None, cancel_requested_by=None, slack_channel=None, slack_thread_ts=None, version=0)
    assert db.create_run(run, ["A000"], 1, ["job-A000"], 2.0)
    assert [e.kind for e in db.events(run_id="new")] == ["run_started"]
    assert [j.id for j in db.jobs("new")] == [2]


def test_the_latest_run_of_a_channel_is_one_indexed_read(tmp_path: Path) -> None:
    db = RunDB(str(tmp_path / "runs.sqlite"))
    for i in range(120):  # more than any page of runs: older runs of C1 lie far behind newer ones elsewhere
        channel = "C1" if i in (3, 7) else ("C2" if i % 2 else None)
        run = Run(id=f"r{i:03d}", date="2018-12-05", batch=f"b{i}", pipeline="wordcount", params={},
                  resources={}, executor="local", store="/s", requested_by="alice", state=RunState.ACTIVE,
                  created_at=float(i), finished_at=None, cancel_requested_by=None, slack_channel=channel,
                  slack_thread_ts=None, version=0)
        assert db.create_run(run, ["A000"], 1, [f"job-{i}"], float(i))
    assert db.latest_run("C1").id == "r007"
    assert db.latest_run("C2").id == "r119"
    assert db.latest_run("C3") is None
    plan = " ".join(r[3] for r in db.query(f"EXPLAIN QUERY PLAN {LATEST_RUN_SQL}", ("C1",)))
    assert "USING INDEX runs_channel" in plan and "TEMP B-TREE" not in plan, plan


# -- PostgreSQL: the same migrations, in place ------------------------------------------------------


def test_a_postgres_ledger_from_an_older_core_version_is_upgraded_in_place(postgres_url: str) -> None:
    import psycopg

    from bot.ledger.schema import postgres_ddl

    with psycopg.connect(postgres_url, autocommit=True) as conn:  # a ledger as core version 2 left it
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (%s)", (LEGACY_DONE,))
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        for sql in CORE.migrations[:2]:
            for statement in statements(sql):
                conn.execute(postgres_ddl(statement))
        conn.execute("INSERT INTO schema_versions VALUES ('core', 2)")
    db = RunDB(postgres_url, components=[SLACK_SCHEMA])
    assert db.schema_versions() == {"core": CORE.version, "slack": SLACK_SCHEMA.version}
    assert db.query("SELECT indexname FROM pg_indexes WHERE indexname = 'runs_channel'")  # migration 3 ran
    assert RunDB(postgres_url).schema_versions() == db.schema_versions()  # opened again: nothing to do


@pytest.mark.parametrize("component", ["core", "slack"])
def test_a_newer_postgres_ledger_is_refused_in_one_line(postgres_url: str, component: str) -> None:
    db = RunDB(postgres_url, components=[SLACK_SCHEMA])
    with db.transaction() as conn:
        conn.execute("UPDATE schema_versions SET version = 42 WHERE component = ?", (component,))
    with pytest.raises(DatabaseError) as refused:
        RunDB(postgres_url, components=[SLACK_SCHEMA])
    message = str(refused.value)
    assert f"({component} tables) has schema version 42, newer than this cyto-bot understands" in message
    assert "\n" not in message and "postgresql://" in message


def test_a_postgres_database_of_something_else_is_not_taken_over(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(DatabaseError, match=r"is not a cyto-bot run database .*invoices"):
        RunDB(postgres_url)


def test_a_postgres_ledger_has_the_same_tables_and_columns_as_a_file(tmp_path: Path, postgres_url: str) -> None:
    RunDB(postgres_url, components=[SLACK_SCHEMA])
    RunDB(str(tmp_path / "runs.sqlite"), components=[SLACK_SCHEMA])
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'")]
        file = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    conn.close()
    db = RunDB(postgres_url)
    postgres: dict[str, list[str]] = {}
    for table, column in db.query("""SELECT table_name, column_name FROM information_schema.columns
                                      WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"""):
        postgres.setdefault(table, []).append(column)
    assert postgres == file
