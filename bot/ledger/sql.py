"""Portable SQL on SQLAlchemy Core: one statement text for SQLite and PostgreSQL.

The ledger writes its SQL once, with `?` or `:name` parameters; `Conn.execute` binds them through
SQLAlchemy (`?` becomes `:p0`, `:p1`, … in order), so the same text runs on sqlite3 and psycopg 3.
Rows come back as `Record`s: a tuple that can also be read by column name, as sqlite3.Row could.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection, CursorResult

Args = Sequence[Any] | Mapping[str, Any]

# A `?` outside a quoted string or identifier.
_QMARK = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|\?""")


@functools.lru_cache(maxsize=1024)
def prepare(sql: str) -> tuple[TextClause, int]:
    """The statement for SQLAlchemy, and how many positional (`?`) parameters it takes."""
    count = 0

    def name(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(1):
            return match.group(1)
        count += 1
        return f":p{count - 1}"

    return text(_QMARK.sub(name, sql)), count


def bind(sql: str, args: Args) -> tuple[TextClause, dict[str, Any]]:
    statement, count = prepare(sql)
    if isinstance(args, Mapping):
        return statement, dict(args)
    if len(args) != count:
        raise ValueError(f"{count} parameters in the statement, {len(args)} given: {sql.strip()[:80]}")
    return statement, {f"p{i}": value for i, value in enumerate(args)}


class Record(tuple[Any, ...]):
    """A row: its values in order, and by column name (`row["state"]`), as sqlite3.Row gives them."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self._index, self, strict=True))


class Cursor:
    """What one statement returned: `rowcount`, and its rows (read at once)."""

    def __init__(self, result: CursorResult[Any] | None) -> None:
        self.rowcount = 0
        self._rows: list[Record] = []
        if result is None:
            return
        self.rowcount = result.rowcount
        if result.returns_rows:
            index = {key: i for i, key in enumerate(result.keys())}
            for row in result:
                record = Record(row)
                record._index = index
                self._rows.append(record)

    def fetchone(self) -> Any:  # Record | None; typed Any as sqlite3's is, for `fetchone()[0]` of an aggregate
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Record]:
        return self._rows

    def __iter__(self) -> Iterator[Record]:
        return iter(self._rows)


class Conn:
    """A connection of the ledger (autocommit; `transaction()` brackets writes itself)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name  # "sqlite" or "postgresql"

    def execute(self, sql: str, args: Args = ()) -> Cursor:
        statement, params = bind(sql, args)
        return Cursor(self.connection.execute(statement, params))

    def executemany(self, sql: str, rows: Iterable[Args]) -> None:
        batch = list(rows)
        if not batch:
            return
        statement = bind(sql, batch[0])[0]
        self.connection.execute(statement, [bind(sql, args)[1] for args in batch])

    def script(self, sql: str) -> None:
        """A statement without parameters (DDL, PRAGMA, BEGIN …), passed to the driver as it is."""
        self.connection.exec_driver_sql(sql)
