"""`cyto run --wait` and `cyto status RUN --wait` follow a run through the ledger's durable events:
they show every transition, whichever process applied it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bot.api import Cyto
from tests.cli_helpers import BATCH, DATE, invoke, write_two_analyses_a02_failing
from tests.timeouts import deadline_after


@pytest.fixture
def batch(cyto_env: dict[str, str]) -> dict[str, str]:
    write_two_analyses_a02_failing(Path(cyto_env["CYTO_STORE"]))
    return cyto_env


def test_status_wait_shows_the_failures_another_process_recorded(batch: dict[str, str]) -> None:
    started = invoke(batch, "run", DATE, BATCH, "--pipeline", "wordcount", "--retries", "0", "--json")
    run_id = json.loads(started.output)["run_id"]
    other = Cyto.from_env(batch)  # the bot, say: it polls first and records the failure
    deadline = deadline_after(60)
    while not other.status(run_id).finished:
        assert time.monotonic() < deadline, "the run did not finish"
        other.poll()
        time.sleep(0.05)

    followed = invoke(batch, "status", run_id, "--wait")

    assert followed.exit_code == 1, followed.output
    assert 'A02: failed after 1 attempt(s): params.json names "gone.txt"' in followed.output
    assert "A01: succeeded" in followed.output
    assert f"run {run_id}: failed" in followed.output
