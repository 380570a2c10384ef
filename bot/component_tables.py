"""A front end's own tables in the run database: a registered component (bot/ledger/schema.py
`Component`) reached through a small handle, so that the front end writes and reads its tables in
the ledger's transactions without holding the ledger itself."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bot.ledger import Component, Conn, Record, RunDB


class ComponentTables:
    """Transactions and plain reads over one component's tables (created or migrated on first use).
    The SQL a caller runs through it names that component's tables only: the core tables (runs, jobs,
    attempts, run_events) are read through `bot.api.Cyto`."""

    def __init__(self, db: RunDB, component: Component) -> None:
        self._db = db
        self.component = component
        db.ensure_schema(component)

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        with self._db.transaction() as conn:
            yield conn

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Record]:
        """A plain read (no write lock)."""
        return self._db.query(sql, args)
