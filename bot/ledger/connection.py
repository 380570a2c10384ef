"""The ledger's file, its identity, connections and transactions (SQLite)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.ledger.errors import DatabaseError, explain
from bot.ledger.schema import Component, create_schema, ensure, migrate


def sqlite_path(url: str) -> str:
    """Accept a plain path or an SQLAlchemy-style `sqlite:///path` URL."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    if "://" in url:
        raise DatabaseError(f"CYTO_DB={url!r}: only SQLite is supported (a file path or sqlite:///path)")
    return url


SQLITE_HEADER = b"SQLite format 3\x00"
FileIdentity = tuple[int, int]  # (st_dev, st_ino): which file a path named when it was opened


class LedgerConnection:
    """The ledger's file and connections. A file that exists must already be a cyto-bot ledger (it is
    never rebuilt empty); a new one is created only when the file does not exist, complete or not at
    all. Every connection checks that the path still names the file opened at start: a ledger deleted
    or replaced under a running process stops its writes instead of splitting it in two."""

    # Class-level defaults keep a RunDB built with __new__ (a test of the locked case) usable.
    _identity: FileIdentity | None = None
    _lost: DatabaseError | None = None

    def __init__(self, url: str, components: Iterable[Component] = ()) -> None:
        """Open (or create) the ledger at `url` and bring its core tables, and those of each of
        `components`, to the versions this code knows."""
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._ensured: set[str] = set()
        if self.path != ":memory:":
            self._absolute = os.path.abspath(os.path.expanduser(self.path))  # a later chdir changes nothing
            file = Path(self._absolute)
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the folder of the run database {self.path}: "
                                    f"{exc.strerror}; point CYTO_DB at a writable path") from exc
            if not file.exists():
                self._refuse_orphaned_log(file)
                self._create(file)
            self._check_header(file)
            self._identity = self._current_identity()
        self._migrate()
        try:  # only now that the file is known to be ours (a ledger keeps this setting)
            self._conn().execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        for component in components:
            self.ensure_schema(component)

    def ensure_schema(self, component: Component) -> None:
        """Register a component's tables: create or migrate them to `component.version` (once per
        object; a later call is free, so a front end may call it wherever it starts). Refuses, naming
        the component, a database whose tables of it are newer than this code."""
        if component.name in getattr(self, "_ensured", ()):
            return
        with self.transaction() as conn:
            ensure(conn, self.path, component)
        self._ensured.add(component.name)

    # -- opening, creating and recognising the file -------------------------------------------
    def _file(self) -> str:
        return getattr(self, "_absolute", None) or os.path.abspath(os.path.expanduser(self.path))

    def _current_identity(self) -> FileIdentity | None:
        try:
            st = os.stat(self._file())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatabaseError(f"cannot read the run database {self.path}: {exc.strerror} (CYTO_DB)") from exc
        return (st.st_dev, st.st_ino)

    def _create(self, file: Path) -> None:
        """Build a new, fully migrated ledger beside `file` and link it into place, so that no
        process ever sees a half-made database (and two starting at once agree on one file)."""
        tmp = file.with_name(f".{file.name}.new-{os.getpid()}-{threading.get_ident()}")
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                create_schema(conn)
                conn.execute("COMMIT")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                os.link(tmp, file)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot create the run database {self.path}: {exc}; "
                                "point CYTO_DB at a writable path") from exc
        except OSError as exc:
            raise DatabaseError(f"cannot create the run database {self.path}: {exc.strerror}; "
                                "point CYTO_DB at a writable path") from exc
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _refuse_orphaned_log(self, file: Path) -> None:
        """A write-ahead log without its database is what is left of a ledger deleted or moved away.
        SQLite would replay it into a new file of the same name; refuse instead."""
        for suffix in ("-wal", "-journal"):
            log = file.with_name(file.name + suffix)
            if log.exists() and log.stat().st_size > 0:
                raise DatabaseError(
                    f"the run database {self.path} is missing but its {log.name} is still there: the "
                    f"database was deleted or moved. Restore it beside {log.name}, or delete {log.name} "
                    "(and any -shm file) to start a new ledger (CYTO_DB)")

    def _check_header(self, file: Path) -> None:
        try:
            with open(file, "rb") as fh:
                header = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise DatabaseError(f"cannot read the run database {self.path}: {exc.strerror} (CYTO_DB)") from exc
        if not header:
            raise DatabaseError(
                f"{self.path} is an empty file, not a cyto-bot run database (a ledger whose data was lost?); "
                "restore it from a backup, or delete it to start a new ledger (CYTO_DB)")
        if header != SQLITE_HEADER:
            raise DatabaseError(f"{self.path} is not a cyto-bot run database (not an SQLite file); "
                                "point CYTO_DB at another file")

    def _check_identity(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._identity is None:
            return
        now = self._current_identity()
        if now == self._identity:
            return
        if now is None:
            what = "was deleted while this process was using it"
            fix = "restore the file from a backup, then restart cyto-bot"
        else:
            what = "was replaced by another file while this process was using it"
            fix = "restart cyto-bot to use the new file, or put the old one back"
        self._lost = DatabaseError(f"the run database {self.path} {what}; this process has stopped "
                                   f"recording anything. {fix} (CYTO_DB)")
        raise self._lost

    # -- connections and transactions ---------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        self._check_identity()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                if self.path == ":memory:":
                    conn = sqlite3.connect(":memory:", isolation_level=None)
                else:
                    # mode=rw: a connection opened later never creates an empty file in place of a lost one.
                    uri = f"file:{quote(self._file())}?mode=rw"
                    conn = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None,
                                           check_same_thread=True)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                self._check_identity()  # "unable to open" because the file is gone says so
                raise self._explain(exc) from exc
            self._local.conn = conn
            self._check_identity()  # the file opened is the one checked at start
        return conn

    def _explain(self, exc: sqlite3.Error) -> DatabaseError:
        return explain(self.path, exc)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Any sqlite3 error inside it (statement or commit) rolls it back
        and is raised as a DatabaseError; errors the body catches itself stay its own."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._explain(exc) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback(conn)
            raise self._explain(exc) from exc
        self._check_identity()  # a commit into a file deleted meanwhile is not kept: say so

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A plain read, outside any write transaction (it takes no write lock, so a reader never
        waits for a writer). An sqlite3 error is raised as a DatabaseError."""
        conn = self._conn()
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc

    def _migrate(self) -> None:
        with self.transaction() as conn:
            migrate(conn, self.path)


class Refused(Exception):
    """Rolls a compare-and-set transaction back when one of its guards fails."""


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back after a failure; a connection too broken to roll back has nothing to keep."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
