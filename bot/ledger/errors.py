"""What the ledger raises, and how an SQLite failure is told to the person who must fix it."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.ledger.records import Run


class DatabaseError(RuntimeError):
    """The run database cannot be used; the message names the file and the fix."""


class BatchBusy(Exception):
    """A run was refused because another run of the same batch is unfinished (`active`)."""

    def __init__(self, active: Run) -> None:
        super().__init__(f"run {active.id} of {active.label} is still active")
        self.active = active


def explain(path: str, exc: sqlite3.Error) -> DatabaseError:
    """An SQLite failure as one line naming the file and what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return DatabaseError(f"the run database {path} is locked by another process; "
                             "wait for it or stop it, then try again (CYTO_DB)")
    if "not a database" in text:
        return DatabaseError(f"{path} is not a cyto-bot run database ({text}); "
                             "point CYTO_DB at another file")
    if "malformed" in text or "corrupt" in text:
        return DatabaseError(f"the run database {path} is damaged ({text}); restore it from a "
                             "backup, or point CYTO_DB at another file")
    if "readonly" in text or "read-only" in text:
        return DatabaseError(f"the run database {path} is read-only ({text}); make the file "
                             "and its folder writable (CYTO_DB)")
    if "disk" in text or "full" in text:
        return DatabaseError(f"the run database {path} cannot be written ({text}); check the "
                             "disk and its free space (CYTO_DB)")
    if "unable to open" in text:
        return DatabaseError(f"cannot open the run database {path} ({text}); check that the "
                             "file and its folder exist and are readable (CYTO_DB)")
    return DatabaseError(f"the run database {path} failed: {text}; if this repeats, the file "
                         "may be damaged or not cyto-bot's (CYTO_DB)")


def explain_postgres(url: str, exc: BaseException) -> DatabaseError:
    """A PostgreSQL failure as one line naming the database (without its password) and what to do."""
    text = " ".join(str(exc).split())
    if "lock timeout" in text:
        return DatabaseError(f"the run database {url} is locked by another process's write; wait for it or "
                             "stop it, then try again (CYTO_DB)")
    if "connection" in text and ("refused" in text or "timeout" in text or "could not" in text
                                 or "failed" in text or "closed" in text):
        return DatabaseError(f"cannot reach the run database {url} ({text}); check that the server is "
                             "running and reachable from here (VPN, security group), then try again (CYTO_DB)")
    if "password authentication failed" in text or "no pg_hba.conf entry" in text or ("role" in text and \
            "does not exist" in text):
        return DatabaseError(f"the run database {url} refused the login ({text}); check the user, password "
                             "or IAM token in CYTO_DB")
    if "database" in text and "does not exist" in text:
        return DatabaseError(f"the run database {url} does not exist ({text}); create it "
                             "(createdb) or correct CYTO_DB")
    if "permission denied" in text:
        return DatabaseError(f"the run database {url} refused ({text}); grant the user rights on the "
                             "ledger's tables (CYTO_DB)")
    return DatabaseError(f"the run database {url} failed: {text} (CYTO_DB)")
