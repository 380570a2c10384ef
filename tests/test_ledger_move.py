"""Moving a ledger and checking it: `copy_ledger` copies every run, job, attempt, event and Slack
record from an SQLite file into an empty PostgreSQL ledger (refusing one that is not empty), and
`RunDB.check` / the doctor say whether the ledger answers and at which schema versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.doctor import check_database
from bot.ledger import CORE, DatabaseError, RunDB
from bot.ledger.copy import copy_ledger
from bot.settings import Settings
from bot.states import JobState, RunState
from handlers.outbox import Kind, Outbox
from handlers.render import FailureEntry
from handlers.slack_schema import SLACK_SCHEMA
from handlers.slack_state import SlackState
from tests.test_ledger import make_engine, start

TABLES = ["runs", "jobs", "attempts", "run_events", "slack_runs", "slack_outbox", "slack_holds", "slack_commands",
          "slack_failures", "slack_cursor"]


def a_busy_ledger(tmp_path: Path) -> tuple[RunDB, str]:
    """An SQLite ledger with a finished run, a failed and retried job, a held run, Slack records."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine, executor, db = make_engine(tmp_path, url, analyses=3)
    db.ensure_schema(SLACK_SCHEMA)
    run = start(engine, retries=1)
    executor.set("A000", JobState.FAILED, exit_code=1, reason="boom")
    engine.poll()
    executor.finish_all()
    engine.poll()
    engine.poll()
    state = SlackState(db)
    state.hold(run.id, "C1", "U1", None, 1.0)
    state.first_delivery("trigger-1", "U1", "C1", "run 2018-12-05 b7", None, 1.0)
    state.plan_failure_replies(run.id, "C1", "1.1", [FailureEntry(analysis="A001", attempt=1, reason="r",
                                                                  exit_code=1, full_log="log")], 2.0)
    Outbox(db).want_edit(f"edit:root:{run.id}", run.id, Kind.EDIT_ROOT, "C1", "1.1", 3, 2.0)
    state.set_synced(run.id, 3)
    state.advance(db.last_event_seq())
    assert engine.get_run(run.id).state == RunState.SUCCEEDED
    return db, url


def rows(db: RunDB, table: str) -> list[tuple[object, ...]]:
    return sorted((tuple(r) for r in db.query(f"SELECT * FROM {table}")), key=repr)


def test_every_record_is_copied_to_postgres_and_counted(tmp_path: Path, postgres_url: str) -> None:
    old, url = a_busy_ledger(tmp_path)
    counts = copy_ledger(url, postgres_url, components=[SLACK_SCHEMA])
    assert list(counts) == TABLES
    assert all(counts[t] > 0 for t in TABLES), counts
    new = RunDB(postgres_url, components=[SLACK_SCHEMA])
    for table in TABLES:
        assert rows(new, table) == rows(old, table), table
    run = old.runs()[0]
    assert new.run(run.id) == run and new.events() == old.events()
    # The copy is a working ledger: its events continue after the copied ones, its jobs after theirs.
    before = new.last_event_seq()
    engine, _, _ = make_engine(tmp_path, postgres_url, analyses=3, db=new)
    second = engine.start_run(engine.plan("2018-12-05", "b7", "wordcount"), "bob", submit=False)
    assert [e.seq > before for e in new.events(before)] == [True]
    assert min(j.id for j in new.jobs(second.id)) > max(j.id for j in new.jobs(run.id))


def test_a_target_that_is_not_empty_is_refused_and_left_alone(tmp_path: Path, postgres_url: str) -> None:
    _, url = a_busy_ledger(tmp_path)
    copy_ledger(url, postgres_url, components=[SLACK_SCHEMA])
    before = rows(RunDB(postgres_url), "runs")
    with pytest.raises(DatabaseError, match=r"is not empty \(1 runs, 3 jobs"):
        copy_ledger(url, postgres_url, components=[SLACK_SCHEMA])
    assert rows(RunDB(postgres_url), "runs") == before


def test_slack_records_are_never_left_behind(tmp_path: Path) -> None:
    _, url = a_busy_ledger(tmp_path)
    with pytest.raises(DatabaseError, match="also holds the tables of slack"):
        copy_ledger(url, f"sqlite:///{tmp_path / 'new.sqlite'}")
    with pytest.raises(DatabaseError, match="the same run database"):
        copy_ledger(url, str(tmp_path / "old.sqlite"), components=[SLACK_SCHEMA])


def test_sqlite_to_sqlite_copies_too(tmp_path: Path) -> None:
    old, url = a_busy_ledger(tmp_path)
    counts = copy_ledger(url, str(tmp_path / "new.sqlite"), components=[SLACK_SCHEMA])
    new = RunDB(str(tmp_path / "new.sqlite"))
    assert counts == {t: len(rows(old, t)) for t in TABLES}
    assert [rows(new, t) for t in TABLES] == [rows(old, t) for t in TABLES]


# -- RunDB.check and the doctor -----------------------------------------------------------------------


def test_check_reports_reachability_and_the_schema_per_component(ledger_url: str) -> None:
    db = RunDB(ledger_url)
    health = db.check([SLACK_SCHEMA])
    assert health.engine == ("postgresql" if ledger_url.startswith("postgresql") else "sqlite")
    assert health.versions == {"core": (CORE.version, CORE.version), "slack": (0, SLACK_SCHEMA.version)}
    assert not health.current and f"slack 0 (this cyto-bot: {SLACK_SCHEMA.version})" in health.describe()
    db.ensure_schema(SLACK_SCHEMA)
    assert db.check([SLACK_SCHEMA]).current


def test_the_doctor_checks_a_postgres_ledger(postgres_url: str) -> None:
    check = check_database(Settings(db=postgres_url))
    assert check.ok and check.detail.startswith("PostgreSQL postgresql://")
    assert f"schema core {CORE.version}" in check.detail


def test_the_doctor_says_when_postgres_does_not_answer() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = check_database(Settings(db=f"postgresql://cyto:secret@127.0.0.1:{port}/ledger"))
    assert not check.ok and "cannot reach the run database postgresql://cyto:***@127.0.0.1" in check.detail
    assert "secret" not in check.detail and "VPN" in check.fix


def test_cyto_ledger_migrate_moves_a_ledger_to_postgres_once(tmp_path: Path, postgres_url: str) -> None:
    """The command a lab runs: the copy lands, the CLI on the new ledger sees the run, and a second
    migrate into the same database is refused (exit 2) with nothing changed."""
    from tests.cli_helpers import invoke

    old, url = a_busy_ledger(tmp_path)
    run = old.runs()[0]
    moved = invoke({}, "ledger", "migrate", "--from", url, "--to", postgres_url)
    assert moved.exit_code == 0, moved.output
    assert moved.output.startswith("copied 1 runs, 3 jobs") and "the counts match" in moved.output
    assert "password" not in moved.output
    env = {"CYTO_DB": postgres_url, "CYTO_STORE": str(tmp_path / "store"), "CYTO_LOCAL_SPOOL": str(tmp_path / "spool")}
    shown = invoke(env, "status", run.id, "--json")
    assert shown.exit_code == 0, shown.output
    assert '"state": "succeeded"' in shown.output
    again = invoke({}, "ledger", "migrate", "--from", url, "--to", postgres_url)
    assert again.exit_code == 2 and "is not empty" in again.output
    assert rows(RunDB(postgres_url), "runs") == rows(old, "runs")


def test_a_source_file_that_is_not_there_is_refused_and_not_created(tmp_path: Path) -> None:
    """A mistyped --from must not create an empty ledger and report a copy of it."""
    missing = tmp_path / "typo.sqlite"
    with pytest.raises(DatabaseError, match=r"no run database at .*typo\.sqlite.*check --from"):
        copy_ledger(f"sqlite:///{missing}", str(tmp_path / "new.sqlite"), components=[SLACK_SCHEMA])
    assert not missing.exists() and not (tmp_path / "new.sqlite").exists()
