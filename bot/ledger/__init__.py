"""The run database (the ledger): the truth about every run, job and attempt (an SQLite file by default,
or a shared PostgreSQL database: `CYTO_DB`). `RunDB` is its one public face.

Every state change happens in one transaction. Changes that two workers could race on (a retry,
a cancel, claiming an attempt for submission) are compare-and-set: the UPDATE names the state it
expects, and a rowcount of 0 means someone else acted first.

Modules: `errors` (what it raises), `records` (typed rows), `schema` (tables and migrations),
`sql` (portable statements and rows on SQLAlchemy Core), `connection` (file identity, connections,
transactions), `events` (durable events), `reads`,
`run_writes`, `job_writes`, `leases` (poll leases), `health` (`RunDB.check`), `copy` (`copy_ledger`: moving a ledger).
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.ledger.connection import is_postgres, sqlite_path
from bot.ledger.errors import BatchBusy, DatabaseError
from bot.ledger.health import Health, check
from bot.ledger.job_writes import JobWrites
from bot.ledger.leases import LeaseWrites
from bot.ledger.reads import LedgerReads
from bot.ledger.records import Attempt, Job, Run, RunEvent, Transition
from bot.ledger.run_writes import RunWrites
from bot.ledger.schema import CORE, Component
from bot.ledger.sql import Conn, Record

__all__ = ["CORE", "Attempt", "BatchBusy", "Component", "Conn", "DatabaseError", "Health", "Job", "Record", "Run",
           "RunDB", "RunEvent", "Transition", "is_postgres", "sqlite_path"]


class RunDB(LedgerReads, RunWrites, JobWrites, LeaseWrites):
    """The run database, at `CYTO_DB`: an SQLite file (a path or `sqlite:///path`) or a shared
    PostgreSQL database (`postgresql://…`). A file that exists must already be a cyto-bot ledger (it
    is never rebuilt empty); a new one is created only when the file does not exist, complete or not
    at all. Every connection checks that the path still names the file opened at start: a ledger
    deleted or replaced under a running process stops its writes instead of splitting it in two. A
    PostgreSQL database must be empty (it becomes a ledger) or a cyto-bot ledger already."""

    def check(self, components: Iterable[Component] = ()) -> Health:
        """Reachability and the schema version of each component (core, and `components` as this code
        knows them): what `cyto doctor` reports. Raises DatabaseError when the database does not answer."""
        return check(self, components)
