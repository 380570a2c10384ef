"""A real PostgreSQL server for the tests (issue 18: the shared ledger).

`CYTO_TEST_POSTGRES`, a `postgresql://` URL to a server on which the tests may create databases, is
used when set (`.ci/run` sets it to a cluster it starts for the whole run). Otherwise the tests start a
throwaway cluster of their own from Debian's binaries (`postgresql-15`, `/usr/lib/postgresql/15/bin`,
or `$CYTO_TEST_PG_BIN`): a temporary folder, a free loopback port, trust authentication, no fsync. As
root the binaries run as the `postgres` system user, since PostgreSQL refuses to run as root.

Each test gets a fresh empty database (`create_database`), dropped after it.

    python -m tests.postgres start FOLDER   # start a cluster in FOLDER, print its URL
    python -m tests.postgres stop FOLDER    # stop it (and leave FOLDER to its owner)
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.timeouts import seconds

ENV = "CYTO_TEST_POSTGRES"
BIN = Path(os.environ.get("CYTO_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


class Unavailable(Exception):
    """No server to test against, and why."""


@dataclass(frozen=True)
class Server:
    """A server on which tests may create and drop databases, reached through `url` (a libpq URL)."""

    url: str

    def database_url(self, name: str) -> str:
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def create_database(self) -> str:
        """A new empty database with a unique name; returns its `postgresql://` URL."""
        name = f"cyto_test_{uuid.uuid4().hex[:16]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        assert name, url
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=int(seconds(10)))


def sqlalchemy_url(url: str) -> str:
    """The same database for SQLAlchemy with psycopg 3 (`postgresql+psycopg://`)."""
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def server_from_env() -> Server | None:
    url = os.environ.get(ENV, "").strip()
    if not url:
        return None
    try:
        with psycopg.connect(url, connect_timeout=int(seconds(10))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise Unavailable(f"{ENV}={make_url(url).render_as_string()} does not answer: {exc}") from exc
    return Server(url)


# -- a throwaway cluster ------------------------------------------------------------------------------
class Cluster:
    """One PostgreSQL cluster in `folder` on a free loopback port, owned by whoever may run it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port_file = folder / "port"

    @property
    def server(self) -> Server:
        port = int(self.port_file.read_text())
        return Server(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres")

    def start(self) -> Server:
        for tool in ("initdb", "pg_ctl"):
            if not (BIN / tool).is_file():
                raise Unavailable(f"no {BIN / tool}: install Debian's postgresql-15 or set {ENV}")
        owner = _owner()
        self.folder.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust",
                  "--no-sync", "--encoding", "UTF8", "--locale", "C")
        port = _free_port()
        self.port_file.write_text(str(port))
        options = f"-h 127.0.0.1 -p {port} -k {self.folder} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log), "--wait",
                  "--timeout", str(int(seconds(60))), "--options", options)
        return self.server

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait",
                      "--timeout", str(int(seconds(60))))

    def _run(self, tool: str, *args: str) -> None:
        owner = _owner()
        proc = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, cwd=self.folder,
                              user=owner.pw_uid if owner else None, group=owner.pw_gid if owner else None,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
                              timeout=seconds(120))
        if proc.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise Unavailable(f"{tool} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}"
                              + (f"\nserver log:\n{log}" if log else ""))


def _owner() -> pwd.struct_passwd | None:
    """The system user to run the server as when we are root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no `postgres` system user to run the server as") from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayCluster:
    """A cluster in a new temporary folder, removed with it when stopped."""

    def __init__(self) -> None:
        self.cluster = Cluster(Path(tempfile.mkdtemp(prefix="cyto-test-postgres-")))

    def start(self) -> Server:
        try:
            return self.cluster.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            self.cluster.stop()
        finally:
            shutil.rmtree(self.cluster.folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("\n".join((__doc__ or "").strip().splitlines()[-2:]), file=sys.stderr)
        return 2
    cluster = Cluster(Path(argv[1]).resolve())
    try:
        if argv[0] == "start":
            print(cluster.start().url)
        else:
            cluster.stop()
    except Unavailable as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
