"""The ledger's database, connections and transactions: an SQLite file (with its identity checks) or a
shared PostgreSQL database, both through SQLAlchemy Core (bot/ledger/sql.py).

Write transactions are serialised on both engines. SQLite's `BEGIN IMMEDIATE` takes the file's write
lock; on PostgreSQL every write transaction first takes one transaction-scoped advisory lock
(`pg_advisory_xact_lock`). So a read-then-write inside a transaction never loses a race to another
writer, and `run_events.seq` (a sequence, allocated under the lock) grows in commit order: a reader
that keeps the last `seq` it saw misses no event. Reads take no lock on either engine.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from bot.ledger.errors import DatabaseError, explain, explain_postgres
from bot.ledger.schema import Component, component_versions, create_schema, ensure, migrate
from bot.ledger.sql import Args, Conn, Record

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
# Every write transaction on PostgreSQL holds this advisory lock until it ends ("cyto" in ASCII).
WRITE_LOCK = 0x6379746F


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0] in POSTGRES_SCHEMES if "://" in url else False


def sqlite_path(url: str) -> str:
    """Accept a plain path or an SQLAlchemy-style `sqlite:///path` URL."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    if "://" in url:
        raise DatabaseError(f"CYTO_DB={url!r}: not a run database URL; use a file path, sqlite:///path, "
                            "or postgresql://user@host/database")
    return url


def postgres_url(url: str) -> str:
    """A `postgresql://` URL for SQLAlchemy with psycopg 3 (`postgresql+psycopg://`)."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    except ArgumentError as exc:
        raise DatabaseError(f"CYTO_DB: cannot read the PostgreSQL URL ({exc})") from exc
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def shown(url: str) -> str:
    """The URL as messages name it (without its password)."""
    if not is_postgres(url):
        return sqlite_path(url)
    return make_url(postgres_url(url)).set(drivername="postgresql").render_as_string(hide_password=True)


SQLITE_HEADER = b"SQLite format 3\x00"
FileIdentity = tuple[int, int]  # (st_dev, st_ino): which file a path named when it was opened


class LedgerConnection:
    """The ledger's database and connections. An SQLite file that exists must already be a cyto-bot
    ledger (it is never rebuilt empty); a new one is created only when the file does not exist,
    complete or not at all. Every connection checks that the path still names the file opened at
    start: a ledger deleted or replaced under a running process stops its writes instead of splitting
    it in two. A PostgreSQL database must be empty or a cyto-bot ledger."""

    # Class-level defaults keep a RunDB built with __new__ (a test of the locked case) usable.
    _identity: FileIdentity | None = None
    _lost: DatabaseError | None = None
    _engine: Engine | None = None
    postgres = False
    lock_timeout_s = 30.0

    def __init__(self, url: str, components: Iterable[Component] = ()) -> None:
        """Open (or create) the ledger at `url` (a path, `sqlite:///path` or `postgresql://…`) and bring
        its core tables, and those of each of `components`, to the versions this code knows."""
        self.url = url
        self.postgres = is_postgres(url)
        self.path = shown(url)  # what messages name: the file, or the URL without its password
        self._local = threading.local()
        self._ensured: set[str] = set()
        if self.postgres:
            # A writer waits at most lock_timeout_s for another's write transaction, as SQLite's busy timeout.
            self._engine = create_engine(postgres_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                         connect_args={"connect_timeout": 10,
                                                       "options": f"-c lock_timeout={int(self.lock_timeout_s * 1000)}"})
        else:
            self._engine = self._sqlite_engine()
        if not self.postgres and self.path != ":memory:":
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
        if not self.postgres:
            try:  # only now that the file is known to be ours (a ledger keeps this setting)
                self._conn().script("PRAGMA journal_mode=WAL")
            except DBAPIError as exc:
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

    def schema_versions(self) -> dict[str, int]:
        """The recorded schema version of each component (`core`, `slack`, …)."""
        conn = self._conn()
        try:
            return component_versions(conn)
        except DBAPIError as exc:
            raise self._explain(exc) from exc

    def close(self) -> None:
        """Close this thread's connection and the engine (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.connection.close()
            self._local.conn = None
        if self._engine is not None:
            self._engine.dispose()

    def _sqlite_engine(self) -> Engine:
        def connect() -> sqlite3.Connection:
            if self.path == ":memory:":
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            else:
                # mode=rw: a connection opened later never creates an empty file in place of a lost one.
                uri = f"file:{quote(self._file())}?mode=rw"
                conn = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn

        engine = create_engine("sqlite://", creator=connect, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        # SQLAlchemy's pysqlite dialect would otherwise begin transactions its own way: ours are explicit.
        event.listen(engine, "connect", lambda dbapi, _record: setattr(dbapi, "isolation_level", None))
        return engine

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
    def _conn(self) -> Conn:
        self._check_identity()
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._engine is None:
                self._engine = self._sqlite_engine()
            try:
                conn = Conn(self._engine.connect())
            except DBAPIError as exc:
                self._check_identity()  # "unable to open" because the file is gone says so
                raise self._explain(exc) from exc
            self._local.conn = conn
            self._check_identity()  # the file opened is the one checked at start
        return conn

    def _explain(self, exc: DBAPIError | sqlite3.Error) -> DatabaseError:
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        if isinstance(orig, sqlite3.Error):
            return explain(self.path, orig)
        return explain_postgres(self.path, orig if isinstance(orig, BaseException) else exc)

    def _begin(self, conn: Conn) -> None:
        if self.postgres:
            conn.script("BEGIN")
            conn.script(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        else:
            conn.script("BEGIN IMMEDIATE")

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """One write transaction, serialised with every other writer of the ledger. Any database error
        inside it (statement or commit) rolls it back and is raised as a DatabaseError; errors the body
        catches itself stay its own."""
        conn = self._conn()
        try:
            self._begin(conn)
        except DBAPIError as exc:
            rollback(conn)
            self._forget_broken(conn)
            raise self._explain(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            rollback(conn)
            if isinstance(exc, DBAPIError):
                self._forget_broken(conn)
                raise self._explain(exc) from exc
            raise
        try:
            conn.script("COMMIT")
        except DBAPIError as exc:
            rollback(conn)
            self._forget_broken(conn)
            raise self._explain(exc) from exc
        self._check_identity()  # a commit into a file deleted meanwhile is not kept: say so

    def query(self, sql: str, args: Args = ()) -> list[Record]:
        """A plain read, outside any write transaction (it takes no write lock, so a reader never
        waits for a writer). A database error is raised as a DatabaseError."""
        conn = self._conn()
        try:
            return conn.execute(sql, args).fetchall()
        except DBAPIError as exc:
            self._forget_broken(conn)
            raise self._explain(exc) from exc

    def _forget_broken(self, conn: Conn) -> None:
        """A connection the server closed is dropped, so the next call opens a new one."""
        if conn.connection.invalidated or conn.connection.closed:
            self._local.conn = None

    def _migrate(self) -> None:
        with self.transaction() as conn:
            migrate(conn, self.path)


class Refused(Exception):
    """Rolls a compare-and-set transaction back when one of its guards fails."""


def rollback(conn: Conn) -> None:
    """Roll back after a failure; a connection too broken to roll back has nothing to keep."""
    with contextlib.suppress(DBAPIError, sqlite3.Error):
        conn.script("ROLLBACK")
