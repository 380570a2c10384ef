"""The run database fails loudly: a ledger deleted or replaced under a running process stops its
writes with one message, a file that is not a ledger is refused (never rebuilt empty), and every
sqlite3 error comes out as a DatabaseError naming the file."""

from __future__ import annotations

import os
import pwd
import re
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.engine import Engine
from bot.executors import Resources
from bot.ledger import CORE, DatabaseError, RunDB
from bot.store.local import LocalStore
from tests.privileges import as_unprivileged_user
from tests.scripted_executor import ScriptedExecutor


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    store = LocalStore(tmp_path / "store")
    for name in ("A01", "A02"):
        store.write_bytes(f"Input/2018-12-05/b7/{name}/x.txt", b"hello\n")
    return Engine(store, ScriptedExecutor(), RunDB(str(tmp_path / "runs.sqlite")))


def start(engine: Engine) -> str:
    return engine.start_run(engine.plan("2018-12-05", "b7", "wordcount", Resources(retries=1)), "alice").id


def in_thread(func) -> BaseException | None:
    """Run `func` on a new thread (a new per-thread connection) and return what it raised."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            func()
        except BaseException as exc:  # handed back to the test
            raised.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    return raised[0] if raised else None


# -- a ledger that disappears under a running process ------------------------------------------------
def test_a_ledger_deleted_mid_run_stops_every_thread_and_no_empty_file_appears(engine: Engine,
                                                                              tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    start(engine)
    engine.poll()
    path.unlink()
    with pytest.raises(DatabaseError, match=r"runs\.sqlite was deleted while this process was using it"):
        engine.poll()
    # A thread that opens its first connection now (a Slack listener, the submit worker) is refused
    # too, instead of creating an empty ledger beside the poll thread's deleted one.
    error = in_thread(lambda: engine.db.runs())
    assert isinstance(error, DatabaseError) and "was deleted" in str(error)
    assert not path.exists()
    with pytest.raises(DatabaseError, match="stopped recording anything"):
        engine.db.set_slack_thread("x", "C1", "1.0")
    assert not path.exists()


def test_a_ledger_replaced_mid_run_is_detected(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    run_id = start(engine)
    other = tmp_path / "other.sqlite"
    RunDB(str(other))
    os.replace(other, path)
    with pytest.raises(DatabaseError, match="was replaced by another file"):
        engine.db.run(run_id)
    error = in_thread(lambda: engine.db.run(run_id))
    assert isinstance(error, DatabaseError) and "was replaced" in str(error)


def test_a_write_that_lands_in_a_deleted_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    db = RunDB(str(path))
    with pytest.raises(DatabaseError, match="was deleted"), db.transaction() as conn:
        conn.execute("CREATE TABLE scratch (x)")
        path.unlink()


# -- start-up: only our ledger, or a file that does not exist yet -------------------------------------
def foreign(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.close()


def header_only(path: Path) -> None:
    """An SQLite file with no tables: what is left of a ledger whose WAL was lost before a checkpoint."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def newer(path: Path) -> None:
    RunDB(str(path))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'core'")
    conn.close()


def damaged(path: Path) -> None:
    RunDB(str(path))
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1's b-tree: the schema itself
    path.write_bytes(bytes(data))


STARTUP_CASES = {
    "foreign": (foreign, r"is not a cyto-bot run database \(it holds the tables customers and no schema_version\)"),
    "not-sqlite": (lambda p: p.write_text("name,count\nAda,1\n" * 50), r"not a cyto-bot run database \(not an SQLite"),
    "empty-file": (lambda p: p.write_bytes(b""), "is an empty file, not a cyto-bot run database"),
    "no-tables": (header_only, r"is not a cyto-bot run database \(it has no tables"),
    "newer": (newer, "has schema version 99, newer than this cyto-bot understands"),
    "damaged": (damaged, "is damaged|not a cyto-bot run database"),
}


@pytest.mark.parametrize("case", sorted(STARTUP_CASES))
def test_a_file_that_is_not_our_ledger_is_refused_and_left_as_it_was(tmp_path: Path, case: str) -> None:
    make, message = STARTUP_CASES[case]
    path = tmp_path / "runs.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match=message) as raised:
        RunDB(str(path))
    assert str(path) in str(raised.value)
    assert path.read_bytes() == before
    if case == "foreign":
        with sqlite3.connect(path) as conn:
            assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["customers"]
        conn.close()


@pytest.mark.parametrize("case", sorted(STARTUP_CASES))
def test_cli_exits_2_with_one_line_for_a_bad_ledger(cyto_env: dict[str, str], case: str) -> None:
    make, _ = STARTUP_CASES[case]
    path = Path(cyto_env["CYTO_DB"])
    path.parent.mkdir(parents=True)
    make(path)
    result = CliRunner().invoke(cli, ["runs"], env=cyto_env)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cyto: ") and str(path) in lines[0], result.output


@pytest.mark.parametrize("case", ["foreign", "newer"])
def test_serve_exits_2_with_one_line_for_a_bad_ledger(cyto_env: dict[str, str], case: str) -> None:
    make, _ = STARTUP_CASES[case]
    path = Path(cyto_env["CYTO_DB"])
    path.parent.mkdir(parents=True)
    make(path)
    env = {**cyto_env, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "xapp-test",
           "SLACK_API_URL": "http://127.0.0.1:9/api/"}
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cyto: ") and str(path) in lines[0], result.output


def test_a_write_ahead_log_left_by_a_deleted_ledger_is_not_replayed_into_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    holder = RunDB(str(path))
    with holder.transaction() as conn:  # a write: the -wal has frames in it
        conn.execute("CREATE TABLE scratch (x)")
    wal = path.with_name("runs.sqlite-wal")
    assert wal.stat().st_size > 0
    path.unlink()
    with pytest.raises(DatabaseError, match=r"is missing but its runs\.sqlite-wal is still there"):
        RunDB(str(path))
    assert not path.exists()


def test_a_ledger_found_again_after_a_chdir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = RunDB("runs.sqlite")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert in_thread(lambda: db.runs()) is None
    assert not (elsewhere / "runs.sqlite").exists()


def test_the_scheduler_reports_a_lost_ledger_once_not_at_every_tick(tmp_path: Path, caplog) -> None:
    from bot.scheduler import PollScheduler

    path = tmp_path / "runs.sqlite"
    db = RunDB(str(path))
    path.unlink()
    tick = PollScheduler._guarded("poll", db.unfinished_run_ids)  # what the scheduler runs at each tick
    with caplog.at_level("ERROR", logger="bot.scheduler"):
        for _ in range(3):
            tick()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "was deleted while this process was using it" in messages[0]
    assert caplog.records[0].exc_info is None  # one line, no traceback


def test_a_new_ledger_is_created_only_where_no_file_exists(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "runs.sqlite"
    RunDB(str(path)).runs()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT component, version FROM schema_versions").fetchall() == [("core", CORE.version)]
        # Created complete and checkpointed: the schema is in the main file, not only in a WAL.
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {"runs", "jobs", "attempts", "run_events", "schema_versions"} <= tables
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_processes_starting_together_agree_on_one_new_ledger(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            RunDB(str(path)).runs()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


# -- every sqlite3 error is a DatabaseError ---------------------------------------------------------
def test_statement_and_commit_errors_are_database_errors_and_roll_back(tmp_path: Path) -> None:
    db = RunDB(str(tmp_path / "runs.sqlite"))
    with pytest.raises(DatabaseError, match=r"runs\.sqlite failed: no such table: nope"):
        db.query("SELECT * FROM nope")
    with pytest.raises(DatabaseError, match="no such column"), db.transaction() as conn:
        conn.execute("UPDATE runs SET state = 'X'")
        conn.execute("UPDATE runs SET no_such_column = 1")
    # A constraint only checked at commit: the commit fails, is reported, and nothing is kept.
    with pytest.raises(DatabaseError, match="FOREIGN KEY constraint failed"), db.transaction() as conn:
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("""INSERT INTO jobs (id, run_id, analysis, state, attempt, max_attempts, updated_at)
                        VALUES (1, 'no-such-run', 'A01', 'PENDING', 1, 1, 0)""")
    assert db.query("SELECT COUNT(*) FROM jobs")[0][0] == 0
    with db.transaction() as conn:  # the connection is usable again
        conn.execute("UPDATE runs SET state = 'ACTIVE' WHERE 0")


def test_a_read_only_ledger_names_the_fix() -> None:
    with tempfile.TemporaryDirectory(prefix="cyto-read-only-") as scratch:  # /tmp: reachable by `nobody`
        folder = Path(scratch) / "state"
        folder.mkdir()
        path = folder / "runs.sqlite"
        RunDB(str(path))
        if os.geteuid() == 0:  # the unprivileged user owns the folder, as a lab member owns theirs
            nobody = pwd.getpwnam("nobody")
            for owned in (Path(scratch), folder, path):
                os.chown(owned, nobody.pw_uid, nobody.pw_gid)
        path.chmod(0o444)

        def write() -> str:
            try:
                RunDB(str(path)).set_slack_thread("x", "C1", "1.0")
            except DatabaseError as exc:
                return f"DatabaseError: {exc}"
            return "written"

        answer = as_unprivileged_user(write)
    assert answer.startswith("DatabaseError: ") and re.search(r"read-only|readonly", answer), answer


def test_doctor_names_a_foreign_ledger_once(tmp_path: Path) -> None:
    from bot.doctor import check_database
    from bot.settings import Settings

    path = tmp_path / "runs.sqlite"
    foreign(path)
    check = check_database(Settings(db=str(path)))
    assert not check.ok and "is not a cyto-bot run database" in check.detail
    assert check.detail.count("CYTO_DB") == 1
