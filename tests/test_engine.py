"""Engine logic against a scripted executor: transitions, automatic and manual retries, cancel,
idempotent submission, compare-and-set races."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.engine import AlreadyRetried, Engine, EngineError, NotFound
from bot.executors import Resources, job_name
from bot.ledger import DatabaseError, RunDB
from bot.states import EventKind, JobState, RunState
from bot.store.local import LocalStore
from tests.scripted_executor import ScriptedExecutor


@pytest.fixture
def setup(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    for name in ("A01", "A02", "A03"):
        store.write_bytes(f"Input/2018-12-05/b7/{name}/x.txt", b"hello\n")
    executor = ScriptedExecutor()
    db = RunDB(str(tmp_path / "runs.sqlite"))
    engine = Engine(store, executor, db)
    def events() -> list:  # what the ledger recorded, as any consumer reads it
        return db.events(0)

    return engine, executor, db, events


def start(engine: Engine, retries: int = 1):
    plan = engine.plan("2018-12-05", "b7", "wordcount", Resources(retries=retries))
    return engine.start_run(plan, "alice")


def test_start_records_and_submits_one_job_per_analysis(setup) -> None:
    engine, executor, db, events = setup
    run = start(engine)
    assert sorted(executor.submit_calls) == sorted(job_name(run.id, a, 1) for a in ("A01", "A02", "A03"))
    assert {j.state for j in db.jobs(run.id)} == {JobState.QUEUED}
    spec = executor.specs[executor.latest("A02")]
    env = spec.environment()
    assert env["CYTO_INPUT_URI"].endswith("/store/Input/2018-12-05/b7/A02/")
    assert env["CYTO_OUTPUT_URI"].endswith("/store/Output/2018-12-05/b7/A02/")
    assert env["CYTO_LOGS_URI"].endswith(f"/store/Logs/2018-12-05/b7/A02/{run.id}/")
    assert env["CYTO_ATTEMPT"] == "1" and env["CYTO_PIPELINE"] == "wordcount"
    assert spec.tags["cyto:requested-by"] == "alice"
    assert events()[0].kind == EventKind.RUN_STARTED


def test_success_path_finishes_the_run(setup) -> None:
    engine, executor, db, events = setup
    run = start(engine)
    for a in ("A01", "A02", "A03"):
        executor.set(a, JobState.RUNNING)
    engine.poll()
    assert db.counts(run.id) == {JobState.RUNNING: 3}
    for a in ("A01", "A02", "A03"):
        executor.set(a, JobState.SUCCEEDED, exit_code=0)
    engine.poll()
    assert engine.get_run(run.id).state == RunState.SUCCEEDED
    assert [e.kind for e in events()].count(EventKind.RUN_FINISHED) == 1
    engine.poll()  # nothing more happens once finished
    assert [e.kind for e in events()].count(EventKind.RUN_FINISHED) == 1


def test_failure_is_retried_automatically_then_reported(setup) -> None:
    engine, executor, db, events = setup
    run = start(engine, retries=2)
    executor.set("A01", JobState.SUCCEEDED, exit_code=0)
    executor.set("A02", JobState.SUCCEEDED, exit_code=0)
    for attempt in (1, 2, 3):
        executor.set("A03", JobState.FAILED, exit_code=1, log="working\nERROR: bad gate\n")
        engine.poll()
        assert len(executor.job_ids("A03")) == min(attempt + 1, 3)
    job = db.job(run.id, "A03")
    assert job.state == JobState.FAILED and job.attempt == 3
    assert job.reason == "bad gate (exit code 1)"
    assert [a.state for a in db.attempts(job.id)] == [JobState.FAILED] * 3
    kinds = [e.kind for e in events() if e.analysis == "A03"]
    assert kinds.count(EventKind.JOB_RETRYING) == 2 and kinds.count(EventKind.JOB_FAILED) == 1
    assert engine.get_run(run.id).state == RunState.FAILED
    summary = engine.summary(run.id)
    assert summary.count(JobState.SUCCEEDED) == 2 and summary.failures[0].analysis == "A03"
    assert summary.reasons == {"bad gate (exit code 1)": 1}


def test_manual_retry_reopens_the_run_and_acts_once(setup) -> None:
    engine, executor, db, _ = setup
    run = start(engine, retries=0)
    executor.set("A01", JobState.SUCCEEDED, exit_code=0)
    executor.set("A02", JobState.SUCCEEDED, exit_code=0)
    executor.set("A03", JobState.FAILED, exit_code=1)
    engine.poll()
    assert engine.get_run(run.id).state == RunState.FAILED
    assert engine.retry(run.id, "A03", by="bob", memory_mib=4096) == ["A03"]
    with pytest.raises(AlreadyRetried, match="already retried by bob"):
        engine.retry(run.id, "A03", by="carol")
    with pytest.raises(EngineError, match="not failed"):
        engine.retry(run.id, "A01", by="bob")
    assert engine.get_run(run.id).state == RunState.ACTIVE
    spec = executor.specs[executor.latest("A03")]
    assert spec.resources.memory_mib == 4096 and spec.env.attempt == 2
    executor.set("A03", JobState.SUCCEEDED, exit_code=0)
    engine.poll()
    assert engine.get_run(run.id).state == RunState.SUCCEEDED
    assert db.job(run.id, "A03").retried_by == "bob"


def test_concurrent_retries_act_once(setup) -> None:
    engine, executor, db, _ = setup
    run = start(engine, retries=0)
    for a in ("A01", "A02", "A03"):
        executor.set(a, JobState.FAILED, exit_code=1)
    engine.poll()
    results: list[list[str]] = []
    barrier = threading.Barrier(8)

    def click() -> None:
        barrier.wait()
        try:
            results.append(engine.retry(run.id, "A02", by="x", submit=False))
        except AlreadyRetried:
            results.append([])

    threads = [threading.Thread(target=click) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(len, results)) == [0] * 7 + [1]
    assert [a.attempt for a in db.attempts(db.job(run.id, "A02").id)] == [1, 2]


def test_cancel_stops_active_jobs_once(setup) -> None:
    engine, executor, db, _events = setup
    run = start(engine)
    executor.set("A01", JobState.SUCCEEDED, exit_code=0)
    executor.set("A02", JobState.RUNNING)
    engine.poll()
    assert engine.cancel(run.id, by="alice") is True
    assert engine.cancel(run.id, by="alice") is False
    assert len(executor.cancelled) == 2
    engine.poll()
    assert engine.get_run(run.id).state == RunState.CANCELLED
    assert db.counts(run.id) == {JobState.SUCCEEDED: 1, JobState.CANCELLED: 2}
    # A failure reported while cancelling is not retried.
    assert len(executor.job_ids("A02")) == 1


def test_crash_between_submit_and_record_does_not_submit_twice(setup, tmp_path) -> None:
    engine, executor, db, _ = setup
    plan = engine.plan("2018-12-05", "b7", "wordcount", Resources(retries=0))
    run = engine.start_run(plan, "alice", submit=False)
    # A process claims the attempts and submits them, then dies before recording the job ids.
    dead = "somehost:999999:dead"
    claimed = db.claim_pending(run.id, dead, 0.0, [], 100)
    for job, attempt in claimed:
        executor.submit(engine.job_spec(run, job, attempt))
    assert len(executor.submit_calls) == 3
    engine.poll()  # a new process resumes
    assert len(executor.submit_calls) == 3
    assert {j.state for j in db.jobs(run.id)} == {JobState.QUEUED}


def test_claims_of_a_live_process_are_left_alone(setup) -> None:
    engine, executor, db, _ = setup
    import os
    import socket

    run = engine.start_run(engine.plan("2018-12-05", "b7", "wordcount"), "alice", submit=False)
    live = f"{socket.gethostname()}:{os.getpid()}:other"
    db.claim_pending(run.id, live, 0.0, [], 1)
    engine.poll()
    assert len(executor.submit_calls) == 2


def test_poll_describes_all_active_jobs_in_one_call(setup) -> None:
    engine, executor, _, _ = setup
    start(engine)
    executor.describe_calls.clear()
    engine.poll()
    assert executor.describe_calls == [3]


def test_resources_out_of_range_are_refused(setup) -> None:
    engine, *_ = setup
    with pytest.raises(EngineError, match="memory mib 64 is out of range"):
        engine.plan("2018-12-05", "b7", "wordcount", Resources(memory_mib=64))
    with pytest.raises(EngineError, match="timeout s 10 is out of range"):
        engine.plan("2018-12-05", "b7", "wordcount", Resources(timeout_s=10))
    with pytest.raises(NotFound):
        engine.summary("nope")


def test_database_from_a_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "runs.sqlite"
    RunDB(str(path))
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(DatabaseError, match="schema version 99, newer than"):
        RunDB(str(path))


def test_locked_database_gets_a_clear_message(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "runs.sqlite"
    RunDB(str(path))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        db = RunDB.__new__(RunDB)
        db.path = str(path)
        db._local = threading.local()
        import bot.ledger.connection as dbmod

        original = sqlite3.connect
        try:
            dbmod.sqlite3.connect = lambda *a, **k: original(*a, **{**k, "timeout": 0.1})  # type: ignore[assignment]
            with pytest.raises(DatabaseError, match="locked by another process"):
                db._migrate()
        finally:
            dbmod.sqlite3.connect = original  # type: ignore[assignment]
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_not_a_database_file(tmp_path) -> None:
    path = tmp_path / "runs.sqlite"
    path.write_text("this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="not a cyto-bot run database"):
        RunDB(str(path))


def test_the_engines_default_retries_apply_to_a_request_that_names_none(setup, tmp_path: Path) -> None:
    """Front ends plan through Cyto; a request that names no retries gets the engine's default, not a
    second default of the Resources class."""
    from bot.api import Cyto
    from bot.settings import Settings

    engine, executor, db, _ = setup
    cyto = Cyto(Settings(store=str(tmp_path / "store"), db=str(tmp_path / "runs.sqlite")), store=engine.store,
                executor=executor, db=db)
    cyto.engine = Engine(engine.store, executor, db, default_retries=0)
    assert cyto.plan("2018-12-05", "b7", pipeline="wordcount", memory_mib=4096).resources.retries == 0
    assert cyto.plan("2018-12-05", "b7", pipeline="wordcount", retries=3).resources.retries == 3
    assert engine.plan("2018-12-05", "b7", "wordcount").resources.retries == engine.default_retries
