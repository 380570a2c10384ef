"""Shared pytest setup: make the repository importable without installing it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

# Fixtures that start a server (moto, the Slack stand-in, the bot on loopback), mock AWS in process,
# or run jobs as processes (the local executor behind `cyto_env`, a finished cytometry run): a test
# that uses one is end to end, and runs in the slow lane. `python -m pytest -m "not slow"` is the fast
# lane of pure and in-process tests; the README's `python -m pytest` runs both.
END_TO_END_FIXTURES = frozenset({
    "moto_server", "aws", "simple_batch", "shim", "batch_setup", "moto_endpoint", "s3", "stack",
    "slack", "served", "cyto_env", "finished",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if END_TO_END_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
