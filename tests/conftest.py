"""Shared pytest setup: make the repository importable without installing it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

if TYPE_CHECKING:
    from tests.postgres import Server

from tests.timeouts import seconds  # noqa: E402

# Fixtures that start a server (moto, the Slack stand-in, the bot on loopback), mock AWS in process,
# or run jobs as processes (the local executor behind `cyto_env`, a finished cytometry run): a test
# that uses one is end to end, and runs in the slow lane. `python -m pytest -m "not slow" -n auto` is the fast
# lane of pure and in-process tests; the README's `python -m pytest` runs both.
END_TO_END_FIXTURES = frozenset({
    "moto_server", "aws", "simple_batch", "shim", "batch_setup", "moto_endpoint", "s3", "stack",
    "slack", "served", "cyto_env", "finished", "postgres_server", "postgres_url",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    per_test_limit = per_test_timeout(config)
    for item in items:
        if END_TO_END_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if per_test_limit is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(per_test_limit))


def per_test_timeout(config: pytest.Config) -> float | None:
    """pytest-timeout's limit from pyproject.toml, scaled like every other test deadline; a limit given on
    the command line (`--timeout`, `PYTEST_TIMEOUT`) is taken as it is."""
    if config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT"):
        return None
    configured = config.getini("timeout")
    return seconds(float(configured)) if configured else None


# -- under CI a skipped test is a failure ---------------------------------------------------------------
# CI installs everything the tests need from the package registries (.ci/run), so a test that skips
# there hides a broken set-up. The one exception is data no registry carries: a test marked
# `external_data` (registered in pyproject.toml) may skip, and says what is missing.
def skips_fail() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.skipped and skips_fail() and not hasattr(report, "wasxfail") \
            and item.get_closest_marker("external_data") is None:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which installs everything the tests need: {skip_reason(report)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report: pytest.CollectReport = yield
    if report.skipped and skips_fail():
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which installs everything the tests need: {skip_reason(report)}"
    return report


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)


@pytest.fixture
def cyto_env(tmp_path: Path) -> dict[str, str]:
    """Environment variables for a cyto session on the embedded defaults, all inside tmp_path."""
    return {
        "CYTO_STORE": str(tmp_path / "store"),
        "CYTO_DB": str(tmp_path / "state" / "runs.sqlite"),
        "CYTO_LOCAL_SPOOL": str(tmp_path / "state" / "local-jobs"),
        "CYTO_EXECUTOR": "local",
        "CYTO_POLL_SECONDS": "0.2",
    }


@pytest.fixture
def cyto(cyto_env: dict[str, str]):
    from bot.api import Cyto

    (Path(cyto_env["CYTO_STORE"])).mkdir(parents=True, exist_ok=True)
    return Cyto.from_env(cyto_env)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """A PostgreSQL server for the session: `$CYTO_TEST_POSTGRES`, or a throwaway cluster (tests/postgres.py).
    Without one a test skips, and under CI=true (which provides one) fails."""
    from tests.postgres import ThrowawayCluster, Unavailable, server_from_env

    cluster = None
    try:
        server = server_from_env()
        if server is None:
            cluster = ThrowawayCluster()
            server = cluster.start()
    except Unavailable as exc:
        if skips_fail():
            pytest.fail(f"no PostgreSQL server for the tests: {exc}")
        pytest.skip(f"no PostgreSQL server for the tests: {exc}")
    try:
        yield server
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: Server) -> Iterator[str]:
    """A fresh empty database on the session's server, dropped after the test: its `postgresql://` URL."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def new_ledger(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], str]]:
    """A maker of fresh, empty ledgers of one engine (the test runs once per engine): given a folder,
    a `sqlite:///` file in it, or a new database on the session's PostgreSQL server (dropped after the
    test). The postgres case runs in the slow lane."""
    if request.param == "sqlite":
        yield lambda folder: f"sqlite:///{folder / 'runs.sqlite'}"
        return
    server: Server = request.getfixturevalue("postgres_server")
    made: list[str] = []

    def make(_folder: Path) -> str:
        made.append(server.create_database())
        return made[-1]

    try:
        yield make
    finally:
        for url in made:  # WITH (FORCE): connections the test left open are closed by the server

            server.drop_database(url)


@pytest.fixture
def ledger_url(new_ledger: Callable[[Path], str], tmp_path: Path) -> str:
    """A fresh, empty ledger's URL, once per engine: `sqlite:///…` and `postgresql://…` (slow lane)."""
    return new_ledger(tmp_path)
