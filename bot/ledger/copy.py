"""Moving a ledger: every row of one run database copied into a new, empty one (SQLite to a shared
PostgreSQL, say), in one transaction, and the counts checked afterwards."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from bot.ledger.connection import LedgerConnection, is_postgres, shown, sqlite_path
from bot.ledger.errors import DatabaseError
from bot.ledger.schema import CORE, Component
from bot.ledger.sql import Conn

BATCH_ROWS = 1000
TRANSIENT = frozenset({"run_leases"})  # a poll cycle's leases mean nothing to another database
_CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)


def component_tables(component: Component) -> list[str]:
    """The tables a component's migrations create, in the order they do (a table before those
    that refer to it)."""
    names: list[str] = []
    for sql in component.migrations:
        names += [n for n in _CREATE_TABLE.findall(sql) if n not in names]
    return names


def copy_ledger(source_url: str, target_url: str, components: Iterable[Component] = ()) -> dict[str, int]:
    """Copy every run, job, attempt and event, and the tables of each of `components` (the Slack
    app's records: handlers/slack_schema.SLACK_SCHEMA), from the ledger at `source_url` into the one at
    `target_url`. Both are brought to this code's schema first. Refuses a target that holds any row,
    and a source holding tables of a component not named (they would be left behind). Writers of the
    source wait while it is read. Returns the rows copied per table, as counted in the target."""
    from bot.ledger import RunDB

    components = [CORE, *(c for c in components if c.name != CORE.name)]
    if shown(source_url) == shown(target_url):
        raise DatabaseError(f"the source and the target are the same run database ({shown(source_url)})")
    if not is_postgres(source_url) and not os.path.exists(os.path.expanduser(sqlite_path(source_url))):
        raise DatabaseError(f"no run database at {shown(source_url)}; check --from (nothing was copied)")
    source, target = RunDB(source_url, components=components), RunDB(target_url, components=components)
    try:
        left_out = sorted(set(source.schema_versions()) - {c.name for c in components})
        if left_out:
            raise DatabaseError(f"the run database {source.path} also holds the tables of {', '.join(left_out)}; "
                                "name that component too, or they would not be copied")
        tables = [t for c in components for t in component_tables(c) if t not in TRANSIENT]
        held = {t: _count(target, t) for t in tables}
        if any(held.values()):
            what = ", ".join(f"{n} {t}" for t, n in held.items() if n)
            raise DatabaseError(f"the run database {target.path} is not empty ({what}); copy into a new, "
                                "empty ledger (nothing was copied)")
        with source.transaction() as reading, target.transaction() as writing:
            expected = {t: _copy_table(reading, writing, t) for t in tables}
            if target.postgres and "run_events" in tables:
                writing.script("SELECT setval(pg_get_serial_sequence('run_events', 'seq'), "
                               "COALESCE((SELECT MAX(seq) FROM run_events), 0) + 1, false)")
        copied = {t: _count(target, t) for t in tables}
        if copied != expected:
            raise DatabaseError(f"copying {source.path} to {target.path} went wrong: read {expected}, "
                                f"the target holds {copied}")
        return copied
    finally:
        source.close()
        target.close()


def _count(db: LedgerConnection, table: str) -> int:
    return int(db.query(f"SELECT COUNT(*) FROM {table}")[0][0])


def _copy_table(reading: Conn, writing: Conn, table: str) -> int:
    rows = reading.execute(f"SELECT * FROM {table}").fetchall()
    if not rows:
        return 0
    columns = rows[0].keys()
    names = ", ".join(f'"{c}"' for c in columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    for start in range(0, len(rows), BATCH_ROWS):
        writing.executemany(insert, [tuple(r) for r in rows[start:start + BATCH_ROWS]])
    return len(rows)
