"""The ledger's rules (issue 12): the transition table tried exhaustively against the database,
cancel racing submission, claims always resolved, retries never undoing a cancel, every concurrent
pair of actions, and the failure policy."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.engine import Engine, EngineError
from bot.executors import Resources, job_name
from bot.ledger import DatabaseError, RunDB, Transition
from bot.states import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    RUN_TRANSITIONS,
    TERMINAL,
    EventKind,
    JobState,
    RunState,
    can_move,
)
from bot.store.local import LocalStore
from tests.ledger_events import replay
from tests.scripted_executor import ScriptedExecutor
from tests.spool_helpers import spool_job_names
from tests.timeouts import deadline_after, seconds

DATE, BATCH = "2018-12-05", "b7"


def make_engine(tmp_path: Path, url: str, analyses: int = 3, executor: ScriptedExecutor | None = None,
                db: RunDB | None = None) -> tuple[Engine, ScriptedExecutor, RunDB]:
    store = LocalStore(tmp_path / "store")
    for i in range(analyses):
        key = f"Input/{DATE}/{BATCH}/A{i:03d}/x.txt"
        if not store.exists(key):
            store.write_bytes(key, b"hello\n")
    executor = executor or ScriptedExecutor()
    db = db or RunDB(url)
    return Engine(store, executor, db), executor, db


def start(engine: Engine, retries: int = 0, submit: bool = True):
    plan = engine.plan(DATE, BATCH, "wordcount", Resources(retries=retries))
    return engine.start_run(plan, "alice", submit=submit)


def force(db: RunDB, run_id: str, *, run: RunState | None = None, job: JobState | None = None,
          attempt: JobState | None = None) -> None:
    """Put the run, its first job and that job's current attempt into given states (test set-up only)."""
    with db.transaction() as conn:
        if run is not None:
            conn.execute("UPDATE runs SET state = ? WHERE id = ?", (run.value, run_id))
        job_id = conn.execute("SELECT id FROM jobs WHERE run_id = ? ORDER BY id LIMIT 1", (run_id,)).fetchone()[0]
        if job is not None:
            conn.execute("UPDATE jobs SET state = ? WHERE id = ?", (job.value, job_id))
        if attempt is not None:
            conn.execute("UPDATE attempts SET state = ? WHERE job_id = ?", (attempt.value, job_id))


# -- the table itself --------------------------------------------------------------------------------


def test_the_table_covers_every_state_and_terminal_attempts_never_move() -> None:
    assert set(ATTEMPT_TRANSITIONS) == set(JobState) == set(JOB_TRANSITIONS)
    assert set(RUN_TRANSITIONS) == set(RunState)
    for state in TERMINAL:
        assert not ATTEMPT_TRANSITIONS[state]
    assert RUN_TRANSITIONS[RunState.CANCELLING] == {RunState.CANCELLED}
    assert not JOB_TRANSITIONS[JobState.SUCCEEDED]


# -- every transition tried against the database ------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobState, JobState)))
def test_observed_attempt_transitions_follow_the_table(tmp_path: Path, ledger_url: str, old: JobState,
                                                       new: JobState) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, submit=False)
    force(db, run.id, job=old, attempt=old)
    job = db.jobs(run.id)[0]
    t = Transition(run.id, job.analysis, job.id, 1, old, new, new)
    applied = db.apply_transitions([t], 1.0)
    assert bool(applied) == can_move(ATTEMPT_TRANSITIONS, old, new)
    assert db.attempt(job.id, 1).state == (new if applied else old)


@pytest.mark.parametrize("old", list(JobState))
def test_recording_a_submission_needs_a_pending_attempt(tmp_path: Path, ledger_url: str, old: JobState) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, submit=False)
    job = db.jobs(run.id)[0]
    db.claim_pending(run.id, "t", 0.0, [], 10)
    force(db, run.id, job=old, attempt=old)
    recorded, lost = db.record_submitted(run.id, [(job.id, 1, "x-1")], "t", 1.0)
    assert recorded == int(can_move(ATTEMPT_TRANSITIONS, old, JobState.QUEUED))
    assert len(lost) == 1 - recorded


@pytest.mark.parametrize("old", list(JobState))
def test_a_submit_failure_needs_a_pending_attempt(tmp_path: Path, ledger_url: str, old: JobState) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, submit=False)
    job = db.jobs(run.id)[0]
    db.claim_pending(run.id, "t", 0.0, [], 10)
    force(db, run.id, job=old, attempt=old)
    failed = db.record_submit_failed(run.id, job.id, 1, "t", "nope", 1.0)
    assert failed == (old == JobState.PENDING and can_move(ATTEMPT_TRANSITIONS, old, JobState.FAILED))


@pytest.mark.parametrize(("job_state", "run_state"), list(itertools.product(JobState, RunState)))
def test_a_person_s_retry_follows_the_table(tmp_path: Path, ledger_url: str, job_state: JobState,
                                            run_state: RunState) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, submit=False)
    force(db, run.id, run=run_state, job=job_state, attempt=job_state)
    job = db.jobs(run.id)[0]
    ok = db.retry_job(job, job_name(run.id, job.analysis, 2), "bob", None, 1.0, cancel_epoch=0)
    # A person's retry reopens a finished run (the table allows it) but never releases a held one.
    run_allows = run_state == RunState.ACTIVE or (run_state.is_finished
                                                  and can_move(RUN_TRANSITIONS, run_state, RunState.ACTIVE))
    assert ok == (run_allows and can_move(JOB_TRANSITIONS, job_state, JobState.PENDING)
                  and job_state in (JobState.FAILED, JobState.CANCELLED))
    after = db.run(run.id)
    assert after.state == (RunState.ACTIVE if ok else run_state)
    assert db.jobs(run.id)[0].attempt == (2 if ok else 1)


@pytest.mark.parametrize("run_state", list(RunState))
def test_cancel_follows_the_table(tmp_path: Path, ledger_url: str, run_state: RunState) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, submit=False)
    force(db, run.id, run=run_state)
    assert db.request_cancel(run.id, "bob", 1.0) == can_move(RUN_TRANSITIONS, run_state, RunState.CANCELLING)


@pytest.mark.parametrize(("old", "new"), [(o, n) for o in RunState for n in RunState if n.is_finished])
def test_finishing_follows_the_table(tmp_path: Path, ledger_url: str, old: RunState, new: RunState) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, submit=False)
    force(db, run.id, run=old, job=JobState.SUCCEEDED, attempt=JobState.SUCCEEDED)
    assert db.finish_run(run.id, new, 1.0) == can_move(RUN_TRANSITIONS, old, new)


# -- case 1: cancel during submission orphans jobs ---------------------------------------------------


def test_cancel_during_submission_stops_every_job_submitted_after_it(tmp_path: Path, ledger_url: str) -> None:
    """The issue saw 100 jobs of the chunk being submitted recorded QUEUED after a cancel, and run."""
    holder: dict[str, Engine] = {}
    cancelled_at: list[int] = []

    def cancel_midway(count: int) -> None:
        if count == 40 and not cancelled_at:
            cancelled_at.append(count)
            worker = threading.Thread(target=lambda: holder["engine"].cancel(run_id[0], by="carol"))
            worker.start()
            worker.join()

    run_id: list[str] = []
    executor = ScriptedExecutor(on_submit=cancel_midway)
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=150, executor=executor)
    holder["engine"] = engine
    run = start(engine, submit=False)
    run_id.append(run.id)
    engine.submit_pending(run.id)

    assert cancelled_at == [40]
    # Every job the executor still holds is one the ledger knows to be cancelling or told to stop.
    assert executor.live() == set()
    submitted = {f"id-{name}" for name in executor.submit_calls}
    assert submitted <= set(executor.cancelled)
    attempts = [a for job in db.jobs(run.id) for a in db.attempts(job.id)]
    assert {a.state for a in attempts} == {JobState.CANCELLED}
    assert all(a.cancel_sent_at is not None for a in attempts if a.executor_job_id)
    assert {a.executor_job_id for a in attempts if a.executor_job_id} == submitted
    engine.poll()
    assert engine.get_run(run.id).state == RunState.CANCELLED


def test_a_cancel_recorded_before_a_crash_is_sent_by_the_next_poll(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url)
    run = start(engine)
    db.request_cancel(run.id, "carol", 1.0)  # the process died before telling the executor
    assert executor.cancelled == []
    engine.poll()
    assert sorted(executor.cancelled) == sorted(f"id-{n}" for n in executor.submit_calls)
    engine.poll()
    assert len(executor.cancelled) == 3  # told once
    assert engine.get_run(run.id).state == RunState.CANCELLED


def test_a_dead_submitter_s_job_for_a_cancelled_attempt_is_found_and_stopped(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url)
    run = start(engine, submit=False)
    dead = "somehost:999999:dead:1"
    claimed = db.claim_pending(run.id, dead, 0.0, [], 1)
    job, attempt = claimed[0]
    executor.submit(engine.job_spec(run, job, attempt))  # submitted, then the process died
    engine.cancel(run.id, by="carol")
    assert engine.get_run(run.id).state == RunState.CANCELLING  # a claim is still unresolved
    engine.poll()
    assert executor.cancelled == [f"id-{attempt.job_name}"]
    assert db.attempt(job.id, 1).executor_job_id == f"id-{attempt.job_name}"
    assert engine.get_run(run.id).state == RunState.CANCELLED


# -- case 2: an exception between claim and record ---------------------------------------------------


def test_an_analysis_linked_outside_the_store_fails_alone(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=3)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.txt").write_text("hi\n")
    (tmp_path / "store" / "Input" / DATE / BATCH / "A000").rename(tmp_path / "gone")
    (tmp_path / "store" / "Input" / DATE / BATCH / "A000").symlink_to(outside)
    run = start(engine, retries=2)
    bad = db.job(run.id, "A000")
    assert bad.state == JobState.FAILED and "link outside the store" in (bad.reason or "")
    assert bad.attempt == 1  # not retried: it would fail the same way
    assert {j.state for j in db.jobs(run.id) if j.analysis != "A000"} == {JobState.QUEUED}
    executor.finish_all()
    engine.poll()
    assert engine.get_run(run.id).state == RunState.FAILED


def test_a_locked_database_while_recording_leaves_nothing_stuck_or_doubled(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    blocker: list[sqlite3.Connection] = []

    def lock_on_last(count: int) -> None:
        if count == 3 and not blocker:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN EXCLUSIVE")
            blocker.append(conn)
            threading.Timer(1.5, conn.rollback).start()

    executor = ScriptedExecutor(on_submit=lock_on_last)
    engine, executor, db = make_engine(tmp_path, str(path), analyses=3, executor=executor)  # SQLite's file lock
    db._conn().execute("PRAGMA busy_timeout = 50")
    run = start(engine, submit=False)
    engine.submit_pending(run.id)  # submits 3, cannot record them
    assert len(executor.submit_calls) == 3
    deadline = deadline_after(30)
    while db.counts(run.id).get(JobState.QUEUED, 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(DatabaseError):  # while the lock lasts, a poll fails loudly
            engine.poll()  # the same process, not only after a restart
    assert db.counts(run.id) == {JobState.QUEUED: 3}
    assert len(executor.submit_calls) == 3  # found by name, not submitted again
    blocker[0].close()


def test_the_invariant_repairs_a_job_left_apart_from_its_attempt(tmp_path: Path, ledger_url: str, caplog) -> None:
    engine, _, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine)
    with db.transaction() as conn:  # as a crash between two statements of an older version could leave it
        conn.execute("UPDATE attempts SET state = 'SUCCEEDED'")
    with caplog.at_level("WARNING", logger="cyto.engine"):
        engine.poll()
    assert "repaired to SUCCEEDED" in caplog.text
    assert engine.get_run(run.id).state == RunState.SUCCEEDED


# -- case 3: a retry can undo a cancel ---------------------------------------------------------------


def test_a_retry_asked_for_before_a_cancel_never_reopens_the_run(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url)
    run = start(engine)
    executor.set("A000", JobState.FAILED, exit_code=1)
    engine.poll()
    seen = engine.get_run(run.id)  # the retry button was rendered from this
    engine.cancel(run.id, by="carol")
    job = db.job(run.id, "A000")
    assert not db.retry_job(job, job_name(run.id, "A000", 2), "bob", None, 1.0, seen.cancel_epoch)
    engine.poll()
    assert engine.get_run(run.id).state == RunState.CANCELLED
    assert not db.retry_job(job, job_name(run.id, "A000", 2), "bob", None, 1.0, seen.cancel_epoch)
    # After the cancel finished, a retry is a new, explicit action, and it works.
    assert engine.retry(run.id, "A000", by="bob") == ["A000"]
    assert engine.get_run(run.id).state == RunState.ACTIVE


def run_together(*actions: Callable[[], object]) -> None:
    """Start the actions at the same instant on their own threads and wait for all of them."""
    barrier = threading.Barrier(len(actions))

    def go(action: Callable[[], object]) -> None:
        barrier.wait()
        action()

    threads = [threading.Thread(target=go, args=(action,)) for action in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def retry_all_and_cancel_trial(root: Path, url: str) -> None:
    engine, executor, _ = make_engine(root, url, analyses=6)
    run = start(engine)
    for i in range(5):
        executor.set(f"A{i:03d}", JobState.FAILED, exit_code=1)
    engine.poll()
    outcome: dict[str, object] = {}

    def retry_all() -> None:
        try:
            outcome["retried"] = engine.retry(run.id, None, by="bob")
        except EngineError as exc:
            outcome["retried"] = str(exc)

    def cancel() -> None:
        outcome["cancelled"] = engine.cancel(run.id, by="carol")

    run_together(retry_all, cancel)
    assert outcome["cancelled"] is True
    for _ in range(5):
        engine.poll()
    assert engine.get_run(run.id).state == RunState.CANCELLED, outcome
    assert executor.live() == set(), outcome


def test_retry_all_and_cancel_clicked_together_always_end_cancelled(tmp_path: Path, new_ledger) -> None:
    for trial in range(15):
        root = tmp_path / str(trial)
        root.mkdir()
        retry_all_and_cancel_trial(root, new_ledger(root))


# -- every concurrent pair of actions ----------------------------------------------------------------

ACTIONS: dict[str, Callable[[Engine, str], object]] = {
    "cancel": lambda e, r: e.cancel(r, by="carol"),
    "retry": lambda e, r: e.retry(r, "A000", by="bob"),
    "retry-all": lambda e, r: e.retry(r, None, by="bob"),
    "submit": lambda e, r: e.submit_pending(r),
    "poll": lambda e, r: e.poll(),
}


def pair_trial(root: Path, url: str, first: str, second: str) -> None:
    engine, executor, db = make_engine(root, url, analyses=8)
    other = Engine(engine.store, executor, RunDB(url))  # a second process's view
    run = start(engine, submit=False)
    engine.submit_pending(run.id)
    executor.set("A000", JobState.FAILED, exit_code=1)
    executor.set("A001", JobState.FAILED, exit_code=1)
    engine.poll()
    with db.transaction() as conn:  # and a fresh attempt waiting to be submitted
        conn.execute("UPDATE jobs SET state = 'PENDING', attempt = 2 WHERE analysis = 'A002'")
        conn.execute("INSERT INTO attempts (job_id, attempt, job_name, state) "
                     "SELECT id, 2, ?, 'PENDING' FROM jobs WHERE analysis = 'A002'", (job_name(run.id, "A002", 2),))
    errors: list[BaseException] = []
    cancelled: list[bool] = []

    def act(name: str) -> Callable[[], None]:
        who = other if name == "second-engine" else engine
        action = ACTIONS["poll"] if name == "second-engine" else ACTIONS[name]

        def go() -> None:
            try:
                result = action(who, run.id)
                if name == "cancel":
                    cancelled.append(bool(result))
            except EngineError:
                pass
            except BaseException as exc:
                errors.append(exc)
        return go

    run_together(act(first), act(second))
    assert not errors, errors
    # Drain: whatever the executor holds finishes; the run must then finish too (nothing stuck).
    for _ in range(10):
        engine.poll()
        executor.finish_all()
        if engine.get_run(run.id).state.is_finished:
            break
    final = engine.get_run(run.id)
    assert final.state.is_finished, db.counts(run.id)
    if any(cancelled):
        assert final.state == RunState.CANCELLED
    # No orphan: every executor job is either one the ledger holds, or one it told to stop.
    held = {a.executor_job_id for job in db.jobs(run.id) for a in db.attempts(job.id) if a.executor_job_id}
    assert {f"id-{n}" for n in executor.submit_calls} <= held | set(executor.cancelled)
    assert len(executor.submit_calls) == len(set(executor.submit_calls))  # nothing submitted twice


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations_with_replacement(
    [*ACTIONS, "second-engine"], 2)))
def test_concurrent_pairs_keep_the_ledger_true(tmp_path: Path, new_ledger, first: str, second: str) -> None:
    for trial in range(3):
        root = tmp_path / str(trial)
        root.mkdir()
        pair_trial(root, new_ledger(root), first, second)


# -- the failure policy ------------------------------------------------------------------------------


def test_bad_input_exit_2_is_never_retried(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, retries=2)
    executor.set("A000", JobState.FAILED, exit_code=2, log="ERROR: unknown parameter 'transfrom'\n")
    engine.poll()
    job = db.job(run.id, "A000")
    assert job.state == JobState.FAILED and job.attempt == 1
    assert "exit code 2" in (job.failure_rule or "") and "not retried" in (job.failure_rule or "")
    assert len(executor.submit_calls) == 1


def test_out_of_memory_is_retried_once_with_twice_the_memory_then_reported(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, retries=0)  # the memory rule grants its one retry even with --retries 0
    oom = "OutOfMemoryError: Container killed due to memory usage"
    executor.set("A000", JobState.FAILED, exit_code=137, reason=oom)
    engine.poll()
    spec = executor.specs[executor.latest("A000")]
    assert spec.env.attempt == 2 and spec.resources.memory_mib == 4096
    assert "retried once automatically with 4096 MiB" in (db.job(run.id, "A000").failure_rule or "")
    executor.set("A000", JobState.FAILED, exit_code=137, reason=oom)
    engine.poll()
    job = db.job(run.id, "A000")
    assert job.state == JobState.FAILED and job.attempt == 2
    assert job.failure_rule == "out of memory again at 4096 MiB: not retried automatically; retry with --memory 8192"


def test_the_memory_rule_stops_at_the_cap(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=1)
    engine.max_memory_mib = 2048
    run = start(engine, retries=1)
    executor.set("A000", JobState.FAILED, exit_code=137, reason="OutOfMemoryError: killed")
    engine.poll()
    job = db.job(run.id, "A000")
    assert job.state == JobState.FAILED and "already at the cap of 2048 MiB" in (job.failure_rule or "")


def test_other_failures_follow_retries_and_say_so(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=1)
    run = start(engine, retries=1)
    executor.set("A000", JobState.FAILED, exit_code=1)
    engine.poll()
    assert db.job(run.id, "A000").failure_rule == "retried automatically (1 of 1 automatic retry, --retries)"
    executor.set("A000", JobState.FAILED, exit_code=1)
    engine.poll()
    assert db.job(run.id, "A000").failure_rule == "automatic retries spent (1, --retries)"


# -- two processes on one database -------------------------------------------------------------------

SLOW_OR_FAILING_JOB = """
import os, sys, time
time.sleep(0.2)
if os.environ["CYTO_ATTEMPT"] == "1" and int(os.environ["CYTO_ANALYSIS"][1:]) % 3 == 0:
    print("ERROR: flaky", flush=True)
    sys.exit(1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_two_polling_processes_with_a_cancel_and_a_retry_from_two_more(tmp_path: Path, cyto_env: dict[str, str],
                                                                      ledger_url: str, trial: int) -> None:
    import json
    import os
    import random
    import subprocess
    import sys

    from bot.api import Cyto
    from bot.executors.local import LocalExecutor

    root = Path(__file__).resolve().parent.parent
    script = tmp_path / "job.py"
    script.write_text(SLOW_OR_FAILING_JOB)
    env = {**cyto_env, "CYTO_DB": ledger_url, "CYTO_LOCAL_COMMAND": f"{sys.executable} {script}",
           "CYTO_LOCAL_MAX_PARALLEL": "4"}
    cyto = Cyto.from_env(env)
    for i in range(24):
        cyto.store.write_bytes(f"Input/{DATE}/{BATCH}/A{i:03d}/x.txt", b"x\n")
    run = cyto.engine.start_run(cyto.plan(DATE, BATCH, pipeline="wordcount", retries=0), "alice", submit=False)
    proc_env = {**os.environ, **env, "PYTHONPATH": str(root)}

    def actor(action: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "tests.ledger_actor", action, run.id], env=proc_env,
                                cwd=root, stdout=subprocess.PIPE, text=True)

    pollers = [actor("poll"), actor("poll")]
    time.sleep(random.Random(trial).uniform(0.3, 1.5))
    others = [actor("retry-all"), actor("cancel")]
    outputs = [json.loads(p.communicate(timeout=seconds(120))[0].strip().splitlines()[-1]) for p in [*others, *pollers]]
    cancelled = next(o["result"] for o in outputs if o["action"] == "cancel")
    deadline = deadline_after(20)
    while not cyto.engine.get_run(run.id).state.is_finished and time.monotonic() < deadline:
        cyto.poll()
        time.sleep(0.1)
    final = cyto.engine.get_run(run.id)
    assert final.state.is_finished, cyto.db.counts(run.id)
    kinds = [(e.kind, e.state) for e in replay(cyto.db, run.id)]
    if cancelled and (EventKind.RUN_REOPENED, RunState.ACTIVE.value) not in kinds:
        assert final.state == RunState.CANCELLED, outputs
    elif cancelled:  # the retry came after the cancel had finished the run: a new, explicit action
        assert kinds.index((EventKind.RUN_FINISHED, RunState.CANCELLED.value)) < \
            kinds.index((EventKind.RUN_REOPENED, RunState.ACTIVE.value)), kinds
    spool = Path(env["CYTO_LOCAL_SPOOL"])
    local = LocalExecutor(spool, command=(sys.executable, "-c", "pass"))
    job_dirs = set(spool_job_names(local.spool))
    assert job_dirs, "the executor ran the run's jobs"
    held = {a.executor_job_id for job in cyto.db.jobs(run.id) for a in cyto.db.attempts(job.id) if a.executor_job_id}
    assert job_dirs <= held, "every job the executor has is one the ledger knows"
    unfinished = [name for name, status in local.describe(sorted(job_dirs)).items()
                  if not status.state.is_terminal]
    assert unfinished == [], "no job left queued or running"
    events = replay(cyto.db, run.id)  # the events tell every change the four processes made
    retried = next(o["result"] for o in outputs if o["action"] == "retry-all")
    assert any(e.kind == EventKind.RUN_CANCELLING and e.by == "carol" for e in events) == bool(cancelled)
    assert sorted(e.analysis for e in events if e.kind == EventKind.JOB_RETRIED and e.by == "bob") == (
        sorted(retried) if isinstance(retried, list) else [])


def test_a_held_run_is_submitted_by_nobody_and_a_cancel_abandons_it(tmp_path: Path, ledger_url: str) -> None:
    engine, executor, db = make_engine(tmp_path, ledger_url)
    plan = engine.plan(DATE, BATCH, "wordcount", Resources(retries=0))
    run = engine.start_run(plan, "alice", hold=True)  # waiting for its Slack thread
    engine.poll()
    engine.submit_pending(run.id)
    assert executor.submit_calls == [] and engine.get_run(run.id).state == RunState.HELD
    assert engine.cancel(run.id, by="carol") is True  # `cyto cancel` from another front end
    assert engine.get_run(run.id).state == RunState.CANCELLED
    assert {j.state for j in db.jobs(run.id)} == {JobState.CANCELLED}
    assert not engine.release(run.id, "C1", "1.0")  # its thread came too late: nothing starts
    engine.poll()
    assert executor.submit_calls == []
