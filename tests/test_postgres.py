"""The PostgreSQL test server (tests/postgres.py) does what the shared ledger will rely on: a fresh
database per test, and row locks that a second connection skips (`FOR UPDATE SKIP LOCKED`), through
SQLAlchemy Core on psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from tests.postgres import Server, sqlalchemy_url

metadata = MetaData()
jobs = Table("jobs", metadata, Column("id", Integer, primary_key=True), Column("state", String, nullable=False))


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(postgres_url))
    yield engine
    engine.dispose()


def test_each_test_gets_a_fresh_empty_database(postgres_url: str, engine: Engine) -> None:
    assert engine.dialect.driver == "psycopg"
    assert make_url(postgres_url).drivername == "postgresql"  # what CYTO_DB would hold
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_database()").scalar() == make_url(postgres_url).database
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").scalar() == 0


def test_a_locked_row_is_skipped_by_the_other_connection(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(jobs), [{"id": i, "state": "PENDING"} for i in (1, 2, 3)])
    claim = select(jobs.c.id).where(jobs.c.state == "PENDING").order_by(jobs.c.id).limit(1)

    with engine.connect() as first, engine.connect() as second:
        first.begin()
        second.begin()
        assert first.execute(claim.with_for_update(skip_locked=True)).scalar() == 1
        assert second.execute(claim.with_for_update(skip_locked=True)).scalar() == 2
        # Row 1 really is locked: without SKIP LOCKED the second connection cannot take it.
        with pytest.raises(OperationalError) as refused:
            second.execute(claim.with_for_update(nowait=True))
        assert isinstance(refused.value.orig, psycopg.errors.LockNotAvailable)
        second.rollback()
        first.rollback()

    with engine.connect() as third, third.begin():  # once released, the first row is free again
        assert third.execute(claim.with_for_update(skip_locked=True)).scalar() == 1


def test_a_database_is_dropped_after_its_test(postgres_server: Server) -> None:
    url = postgres_server.create_database()
    name = make_url(url).database
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (x int)")
    postgres_server.drop_database(url)
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)
