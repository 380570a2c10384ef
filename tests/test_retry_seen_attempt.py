"""A person's retry names the attempt they saw fail: a job that moved on since (a double click, two
people at once, an automatic retry meanwhile) is not retried a second time."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.api import Cyto
from bot.engine import AlreadyRetried, Engine, EngineError
from bot.executors import job_name
from bot.ledger import RunDB
from bot.settings import Settings
from bot.states import EventKind, JobState
from tests.scripted_executor import ScriptedExecutor
from tests.test_ledger import make_engine, start


def failed_once(tmp_path: Path, url: str) -> tuple[Engine, ScriptedExecutor, str]:
    engine, executor, _ = make_engine(tmp_path, url, analyses=1)
    run = start(engine)
    executor.set("A000", JobState.FAILED, exit_code=1, reason="boom")
    engine.poll()
    assert engine.db.job(run.id, "A000").state == JobState.FAILED
    return engine, executor, run.id


def test_the_ledger_guards_the_attempt_seen_in_the_same_update(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, run_id = failed_once(tmp_path, ledger_url)
    db = engine.db
    engine.retry(run_id, "A000", by="bob")  # attempt 2 ...
    executor.set("A000", JobState.FAILED, exit_code=1, reason="boom again")
    engine.poll()  # ... failed too
    job, epoch = db.job(run_id, "A000"), db.run(run_id).cancel_epoch
    assert job.attempt == 2 and job.state == JobState.FAILED
    before = db.last_event_seq()
    assert not db.retry_job(job, job_name(run_id, "A000", 3), "carol", None, 1.0, epoch, expected_attempt=1)
    assert db.job(run_id, "A000").attempt == 2 and db.last_event_seq() == before
    assert db.retry_job(job, job_name(run_id, "A000", 3), "carol", None, 1.0, epoch, expected_attempt=2)
    assert db.job(run_id, "A000").attempt == 3


def test_a_retry_of_an_attempt_that_moved_on_is_already_retried(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, run_id = failed_once(tmp_path, ledger_url)
    assert engine.retry(run_id, "A000", by="bob", expected_attempt=1) == ["A000"]
    executor.set("A000", JobState.FAILED, exit_code=1, reason="boom again")
    engine.poll()  # attempt 2 failed as well: the job is FAILED again, as attempt 1 was
    with pytest.raises(AlreadyRetried, match="already retried by bob"):
        engine.retry(run_id, "A000", by="carol", expected_attempt=1)  # a late click on attempt 1's reply
    assert engine.db.job(run_id, "A000").attempt == 2
    with pytest.raises(EngineError, match="one analysis"):
        engine.retry(run_id, None, by="carol", expected_attempt=2)


@pytest.mark.parametrize("trial", range(5))
def test_two_retries_of_the_same_attempt_at_once_one_wins(tmp_path: Path, ledger_url: str, trial: int) -> None:
    engine, _, run_id = failed_once(tmp_path, ledger_url)
    second = Engine(engine.store, engine.executor, RunDB(engine.db.url))  # another process's view
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def click(name: str, eng: Engine) -> None:
        barrier.wait()
        try:
            outcomes[name] = eng.retry(run_id, "A000", by=name, submit=False, expected_attempt=1)
        except AlreadyRetried as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=click, args=(name, eng)) for name, eng in (("bob", engine), ("carol", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [name for name, result in outcomes.items() if result == ["A000"]]
    lost = [name for name, result in outcomes.items() if isinstance(result, AlreadyRetried)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    job = engine.db.job(run_id, "A000")
    assert job.attempt == 2 and job.retried_by == won[0]
    assert [e.by for e in engine.db.events(run_id=run_id) if e.kind == EventKind.JOB_RETRIED] == won


def test_the_python_api_passes_the_attempt_seen(tmp_path: Path, ledger_url: str, cyto_env: dict[str, str]) -> None:
    engine, executor, run_id = failed_once(tmp_path, ledger_url)
    cyto = Cyto(Settings.from_env(cyto_env), store=engine.store, executor=executor, db=engine.db)
    assert cyto.retry(run_id, "A000", by="bob", expected_attempt=1) == ["A000"]
    with pytest.raises(AlreadyRetried):
        cyto.retry(run_id, "A000", by="carol", expected_attempt=1)
