"""`Cyto.pending_intents`: a stop recorded but not yet sent to the executor shows until a poll sends it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.api import Cyto
from bot.executors import ExecutorError
from bot.settings import Settings
from bot.states import JobState
from tests.cli_helpers import BATCH, DATE, write_two_analyses
from tests.scripted_executor import ScriptedExecutor


class UnreachableOnCancel(ScriptedExecutor):
    reachable = False

    def cancel(self, job_id: str, reason: str) -> None:
        if not self.reachable:
            raise ExecutorError("the executor is out of reach")
        super().cancel(job_id, reason)


@pytest.fixture
def cyto(cyto_env: dict[str, str], tmp_path: Path) -> Cyto:
    write_two_analyses(Path(cyto_env["CYTO_STORE"]))
    return Cyto(Settings(store=cyto_env["CYTO_STORE"], db=str(tmp_path / "runs.sqlite")),
                executor=UnreachableOnCancel())


def test_a_stop_not_yet_sent_is_pending_until_a_poll_sends_it(cyto: Cyto) -> None:
    executor = cyto.executor
    assert isinstance(executor, UnreachableOnCancel)
    run = cyto.start(cyto.plan(DATE, BATCH, pipeline="wordcount"), "tester")
    assert not cyto.pending_intents(run.id)

    assert cyto.cancel(run.id, by="tester")
    pending = cyto.pending_intents(run.id)
    assert pending and pending.stops_to_send == 2 and pending.unresolved_claims == 0

    executor.reachable = True
    cyto.poll()
    assert not cyto.pending_intents(run.id)
    executor.finish_all(JobState.CANCELLED)
    cyto.poll()
    assert cyto.get_run(run.id).state.is_finished
