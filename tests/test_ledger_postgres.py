"""What only a shared PostgreSQL ledger meets: a server that closes the connection (a restart, a
failover), a URL whose password must never be shown, and a write lock held by another process."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from bot.ledger import DatabaseError, RunDB
from bot.ledger.connection import WRITE_LOCK, shown


def test_a_connection_the_server_closed_is_replaced_by_the_next_call(postgres_url: str) -> None:
    db = RunDB(postgres_url)
    assert db.runs() == []
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # as a restart or a failover would
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid != pg_backend_pid()")
    with pytest.raises(DatabaseError, match="run database postgresql://"):
        db.runs()  # the call that finds it closed says so ...
    assert db.runs() == []  # ... and the next one works on a new connection
    with db.transaction() as conn:
        conn.execute("UPDATE runs SET version = 0 WHERE id = 'none'")


def test_the_password_is_never_shown() -> None:
    assert shown("postgresql://cyto:s3cret@db.example:5432/cyto?sslmode=require") == \
        "postgresql://cyto:***@db.example:5432/cyto?sslmode=require"
    assert shown("postgres://cyto@db/cyto") == "postgresql://cyto@db/cyto"


def test_a_writer_waits_for_another_process_s_write_transaction(postgres_url: str) -> None:
    db = RunDB(postgres_url)
    with psycopg.connect(postgres_url) as other:  # another process in a write transaction
        other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        done = threading.Event()
        threading.Thread(target=lambda: (db.set_slack_thread("none", "C1", "1.0"), done.set())).start()
        time.sleep(0.5)
        assert not done.is_set(), "the write waits for the other transaction"
        other.commit()
        assert done.wait(10)


def test_a_write_held_up_too_long_says_the_ledger_is_locked(postgres_url: str) -> None:
    class Impatient(RunDB):
        lock_timeout_s = 0.3

    db = Impatient(postgres_url)
    with psycopg.connect(postgres_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        with pytest.raises(DatabaseError, match="is locked by another process's write"):
            db.set_slack_thread("none", "C1", "1.0")
    db.set_slack_thread("none", "C1", "1.0")  # free again


def test_cyto_db_chooses_the_engine_by_its_form(tmp_path) -> None:
    from bot.ledger import is_postgres

    plain, url = RunDB(str(tmp_path / "a.sqlite")), RunDB(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert not plain.postgres and plain.path == url.path == str(tmp_path / "a.sqlite")
    assert is_postgres("postgresql://u@h/db") and is_postgres("postgres://u@h/db")
    assert is_postgres("postgresql+psycopg://u@h/db") and not is_postgres("/data/runs.sqlite")
    with pytest.raises(DatabaseError, match="not a run database URL; use a file path, sqlite:///path, or postgresql"):
        RunDB("mysql://u@h/db")
