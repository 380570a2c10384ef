"""A person's retry names the attempt they saw fail: a job that moved on since (a double click, two
people at once, an automatic retry meanwhile) is not retried a second time."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from bot.api import Cyto
from bot.engine import AlreadyRetried, Engine, EngineError
from bot.executors import Resources, job_name
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


def test_retry_many_retries_each_analysis_still_at_the_attempt_seen(tmp_path: Path, cyto_env: dict[str, str],
                                                                    ledger_url: str) -> None:
    """The listed failures of a Slack reply, retried at once: one retried meanwhile by someone else is
    left out, the others are retried, and nothing is checked before the guarded update itself."""
    engine, executor, _ = make_engine(tmp_path, ledger_url, analyses=3)
    run_id = start(engine).id
    for name in ("A000", "A001", "A002"):
        executor.set(name, JobState.FAILED, exit_code=1, reason="boom")
    engine.poll()
    cyto = Cyto(Settings.from_env(cyto_env), store=engine.store, executor=executor, db=engine.db)
    assert cyto.retry(run_id, "A001", by="bob", submit=False) == ["A001"]
    seen = [("A000", 1), ("A001", 1), ("A002", 1)]
    assert cyto.retry_many(run_id, seen, by="carol", submit=False) == ["A000", "A002"]
    assert {j.analysis: (j.attempt, j.retried_by) for j in cyto.jobs(run_id)} == {
        "A000": (2, "carol"), "A001": (2, "bob"), "A002": (2, "carol")}
    assert cyto.retry_many(run_id, seen, by="dave") == [], "a second click retries nothing"


def test_cyto_actions_suggests_memory_within_the_configured_cap(tmp_path: Path, cyto_env: dict[str, str]) -> None:
    engine, executor, _ = make_engine(tmp_path, f"sqlite:///{tmp_path / 'runs.sqlite'}", analyses=2)
    plan = engine.plan("2018-12-05", "b7", "wordcount", Resources(retries=0, memory_mib=6144))
    run_id = engine.start_run(plan, "alice").id
    # Killed (137) with no word of memory: no automatic memory retry, but it most likely ran out.
    executor.set("A000", JobState.FAILED, exit_code=137, reason="exit code 137")
    executor.set("A001", JobState.FAILED, exit_code=1, reason="exit code 1")
    engine.poll()
    settings = replace(Settings.from_env(cyto_env), max_memory_mib=8192)
    cyto = Cyto(settings, store=engine.store, executor=executor, db=engine.db)
    actions = cyto.actions(run_id)
    assert actions.retry_failed and not actions.cancel
    a000, a001 = actions.advice("A000"), actions.advice("A001")
    assert a000 is not None and a000.out_of_memory and a000.suggested_memory_mib == 8192, "the cap, not 12288"
    assert a001 is not None and not a001.out_of_memory and a001.suggested_memory_mib is None
