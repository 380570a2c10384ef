"""Shared pytest setup: make the repository importable without installing it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


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
