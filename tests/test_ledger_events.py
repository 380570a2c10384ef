"""Durable events: every state change the ledger makes leaves its event in the same transaction;
a change refused or rolled back leaves none; every RunDB on the file reads the same events in order."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.engine import Engine
from bot.executors import Resources, job_name
from bot.ledger import DatabaseError, Run, RunDB, Transition
from bot.states import EventKind, JobState, RunState
from tests.ledger_events import replay, told
from tests.scripted_executor import ScriptedExecutor
from tests.test_ledger import BATCH, DATE, make_engine, start


def held(engine: Engine):
    plan = engine.plan(DATE, BATCH, "wordcount", Resources(retries=0))
    return engine.start_run(plan, "alice", hold=True)


def test_a_run_s_life_leaves_one_event_per_change_in_order(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=2)
    run = start(engine, retries=1)
    executor.set("A000", JobState.RUNNING)
    engine.poll()
    executor.set("A000", JobState.FAILED, exit_code=1, reason="boom")
    engine.poll()
    engine.poll()
    executor.finish_all()
    engine.poll()
    engine.poll()
    assert told(replay(db, run.id)) == [
        ("run_started", None, "ACTIVE", None),
        ("job_submitted", "A000", "QUEUED", 1),
        ("job_submitted", "A001", "QUEUED", 1),
        ("job_changed", "A000", "RUNNING", 1),
        ("job_retrying", "A000", "PENDING", 1),
        ("job_submitted", "A000", "QUEUED", 2),
        ("job_changed", "A000", "SUCCEEDED", 2),
        ("job_changed", "A001", "SUCCEEDED", 1),
        ("run_finished", None, "SUCCEEDED", None),
    ]
    started = db.events(run_id=run.id)[0]
    assert started.by == "alice" and started.at > 0


def test_a_failure_for_good_and_a_person_s_retry_reopen_the_run(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine)
    executor.set("A000", JobState.FAILED, exit_code=2, reason="bad input")
    engine.poll()
    engine.poll()
    cursor = db.last_event_seq(run.id)
    assert engine.retry(run.id, "A000", by="bob", submit=False) == ["A000"]
    new = db.events(cursor, run_id=run.id)
    assert told(new) == [("run_reopened", None, "ACTIVE", None), ("job_retried", "A000", "PENDING", 2)]
    assert {e.by for e in new} == {"bob"}
    assert told(replay(db, run.id))[2:4] == [("job_failed", "A000", "FAILED", 1),
                                             ("run_finished", None, "FAILED", None)]


def test_a_cancel_tells_the_run_and_each_job_it_cancelled(tmp_path: Path, ledger_url: str) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=2)
    run = start(engine, submit=False)
    assert engine.cancel(run.id, by="carol")
    engine.poll()
    events = replay(db, run.id)
    assert told(events) == [
        ("run_started", None, "ACTIVE", None),
        ("run_cancelling", None, "CANCELLING", None),
        ("job_changed", "A000", "CANCELLED", 1),
        ("job_changed", "A001", "CANCELLED", 1),
        ("run_finished", None, "CANCELLED", None),
    ]
    assert events[1].by == "carol"


def test_a_held_run_is_released_or_abandoned_with_its_events(tmp_path: Path, ledger_url: str) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=2)
    first = held(engine)
    assert engine.release(first.id, "C1", "1.0")
    assert told(replay(db, first.id)) == [("run_started", None, "HELD", None), ("run_released", None, "ACTIVE", None)]
    engine.cancel(first.id, by="carol")
    engine.poll()
    second = held(engine)
    assert db.abandon_run(second.id, "its Slack thread could not be posted", 5.0)
    events = replay(db, second.id)
    assert told(events) == [
        ("run_started", None, "HELD", None),
        ("job_changed", "A000", "CANCELLED", 1),
        ("job_changed", "A001", "CANCELLED", 1),
        ("run_finished", None, "CANCELLED", None),
    ]
    assert events[-1].reason == "its Slack thread could not be posted" and events[-1].at == 5.0


def test_a_submit_failure_and_a_repair_leave_their_events(tmp_path: Path, ledger_url: str) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=2)
    run = start(engine, submit=False)
    (job, _), (other, _) = db.claim_pending(run.id, "t", 0.0, [], 10)
    assert db.record_submit_failed(run.id, job.id, 1, "t", "no such queue", 1.0)
    with db.transaction() as conn:  # as a crash between two statements of an older version could leave it
        conn.execute("UPDATE attempts SET state = 'QUEUED', executor_job_id = 'x' WHERE job_id = ?", (other.id,))
    assert db.repair_job_states([run.id], 2.0) == [(run.id, "A001", "PENDING", "QUEUED")]
    events = replay(db, run.id)
    assert told(events)[1:] == [("job_failed", "A000", "FAILED", 1), ("job_repaired", "A001", "QUEUED", 1)]
    assert events[1].reason == "no such queue"


def test_changes_that_are_refused_leave_no_event(tmp_path: Path, ledger_url: str) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, submit=False)
    job = db.jobs(run.id)[0]
    before = db.last_event_seq()
    assert db.create_run(run, ["A000"], 1, ["n"], 1.0, allow_concurrent=True) is False  # the id is taken
    assert not db.release_run(run.id, "C1", "1.0", 1.0)  # not held
    assert not db.finish_run(run.id, RunState.SUCCEEDED, 1.0)  # a job is pending
    assert not db.retry_job(job, job_name(run.id, "A000", 2), "bob", None, 1.0, cancel_epoch=0)  # not failed
    assert db.record_submitted(run.id, [(job.id, 1, "x")], "not-the-claim", 1.0)[0] == 0
    assert not db.record_submit_failed(run.id, job.id, 1, "not-the-claim", "r", 1.0)
    assert not db.apply_transitions([Transition(run.id, "A000", job.id, 1, JobState.SUCCEEDED, JobState.RUNNING,
                                                JobState.RUNNING)], 1.0)
    assert db.repair_job_states([run.id], 1.0) == []
    assert db.last_event_seq() == before
    assert db.request_cancel(run.id, "carol", 1.0)
    after = db.last_event_seq()
    assert not db.request_cancel(run.id, "dave", 2.0)  # acts once
    assert not db.abandon_run(run.id, "late", 2.0)  # not held
    assert db.last_event_seq() == after


def test_a_change_rolled_back_takes_its_events_with_it(tmp_path: Path, ledger_url: str) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=2)
    run = held(engine)
    before = db.last_event_seq()
    with db.transaction() as conn:  # the last statement of the abandon fails, after its job events were written
        if db.postgres:
            conn.script("""CREATE FUNCTION refuse_finish() RETURNS trigger LANGUAGE plpgsql AS $$
                           BEGIN RAISE EXCEPTION 'refused by the test'; END $$""")
            conn.script("""CREATE TRIGGER refuse_finish BEFORE INSERT ON run_events FOR EACH ROW
                           WHEN (NEW.kind = 'run_finished') EXECUTE FUNCTION refuse_finish()""")
        else:
            conn.execute("""CREATE TRIGGER refuse_finish BEFORE INSERT ON run_events WHEN NEW.kind = 'run_finished'
                            BEGIN SELECT RAISE(ABORT, 'refused by the test'); END""")
    with pytest.raises(DatabaseError, match="refused by the test"):
        db.abandon_run(run.id, "gone", 1.0)
    assert db.last_event_seq() == before
    assert db.run(run.id).state == RunState.HELD
    assert {j.state for j in db.jobs(run.id)} == {JobState.PENDING}


def test_two_ledgers_on_one_database_read_the_same_events_in_order(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, writer = make_engine(tmp_path, ledger_url, analyses=3)
    reader = RunDB(ledger_url)
    cursor, seen = reader.last_event_seq(), []
    run = start(engine, retries=0)
    seen += reader.events(cursor)
    cursor = seen[-1].seq
    executor.finish_all()
    engine.poll()
    other = Engine(engine.store, ScriptedExecutor(), reader)
    assert other.get_run(run.id).state == RunState.SUCCEEDED
    seen += reader.events(cursor)
    assert seen == writer.events() == reader.events()
    assert reader.events(cursor) and reader.events(seen[-1].seq) == []
    assert [e.seq for e in reader.events(limit=2)] == [e.seq for e in seen[:2]]
    assert reader.last_event_seq(run.id) == writer.last_event_seq() == seen[-1].seq
    assert reader.events(run_id="no-such-run") == [] and reader.last_event_seq("no-such-run") == 0
    assert {e.kind for e in seen} == {EventKind.RUN_STARTED, EventKind.JOB_SUBMITTED, EventKind.JOB_CHANGED,
                                      EventKind.RUN_FINISHED}


def test_an_event_needs_its_run(ledger_url: str) -> None:
    db = RunDB(ledger_url)
    with pytest.raises(DatabaseError, match=r"(?i)foreign key"), db.transaction() as conn:
        conn.execute("INSERT INTO run_events (run_id, kind, at) VALUES ('nope', 'run_started', 1.0)")


def test_a_reader_following_its_cursor_misses_no_event_of_concurrent_writers(ledger_url: str) -> None:
    """On PostgreSQL a sequence hands out `seq` at insert, not at commit: without the writers' lock a
    transaction holding seq n could commit after one holding n + 1, and a reader already past n + 1
    would never see n. Eight writers and one reader, on their own connections, check that none is lost."""
    RunDB(ledger_url)  # create the ledger before the threads race to
    writers, runs_each = 8, 15
    done = threading.Event()
    seen: list[int] = []

    def write(w: int) -> None:
        db = RunDB(ledger_url)
        for i in range(runs_each):
            run = Run(id=f"r{w}-{i}", date="2018-12-05", batch=f"b{w}-{i}", pipeline="wordcount", params={},
                      resources={}, executor="local", store="/s", requested_by="alice", state=RunState.ACTIVE,
                      created_at=1.0, finished_at=None, cancel_requested_by=None, slack_channel=None,
                      slack_thread_ts=None, version=0)
            assert db.create_run(run, ["A000", "A001"], 1, [f"j{w}-{i}-0", f"j{w}-{i}-1"], 1.0)
            assert db.request_cancel(run.id, "carol", 2.0)

    def read() -> None:
        db, cursor = RunDB(ledger_url), 0
        while True:
            finished = done.is_set()
            for event in db.events(cursor):
                seen.append(event.seq)
                cursor = event.seq
            if finished:
                return

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    every = [e.seq for e in RunDB(ledger_url).events(limit=100_000)]
    assert len(every) == writers * runs_each * 4  # started, cancelling, and one per job cancelled
    assert seen == every
