"""Is the ledger usable from here: reachable, and its tables at versions this code knows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.ledger.connection import LedgerConnection
from bot.ledger.schema import CORE, Component


@dataclass(frozen=True)
class Health:
    """What `RunDB.check` found. `versions`: per component, (recorded in the database, known to this
    code); a component this code knows but the database has not recorded yet shows 0 (its tables are
    made when the front end that owns them starts)."""

    engine: str  # "sqlite" or "postgresql"
    where: str  # the file, or the URL without its password
    versions: dict[str, tuple[int, int]]
    seconds: float  # one round trip to the database

    @property
    def current(self) -> bool:
        return all(recorded == known for recorded, known in self.versions.values())

    def schema(self) -> str:
        """`schema core 3, slack 1`, naming any version this code would bring up."""
        return "schema " + ", ".join(f"{name} {recorded}" + ("" if recorded == known else f" (this cyto-bot: {known})")
                                     for name, (recorded, known) in self.versions.items())

    def describe(self) -> str:
        kind = "PostgreSQL" if self.engine == "postgresql" else "SQLite"
        return f"{kind} {self.where} answers in {self.seconds * 1000:.0f} ms; {self.schema()}"


def check(db: LedgerConnection, components: Iterable[Component] = ()) -> Health:
    """Reach the database (raises DatabaseError when it cannot) and read its schema versions."""
    import time

    started = time.perf_counter()
    db.query("SELECT 1")
    seconds = time.perf_counter() - started
    recorded = db.schema_versions()
    known = {CORE.name: CORE.version, **{c.name: c.version for c in components}}
    versions = {name: (recorded.get(name, 0), known.get(name, recorded.get(name, 0)))
                for name in sorted({*known, *recorded}, key=lambda n: (n != CORE.name, n))}
    return Health("postgresql" if db.postgres else "sqlite", db.path, versions, seconds)
