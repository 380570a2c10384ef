"""APScheduler drives the poll step; it holds no state, so a new scheduler resumes every unfinished run."""

from __future__ import annotations

import time
from pathlib import Path

from bot.engine import Engine
from bot.executors import Resources
from bot.ledger import RunDB
from bot.scheduler import PollScheduler
from bot.states import JobState, RunState
from bot.store.local import LocalStore
from tests.scripted_executor import ScriptedExecutor
from tests.timeouts import seconds


def wait_until(predicate, timeout: float = seconds(10.0)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_scheduler_polls_and_a_new_one_resumes_after_a_restart(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for name in ("A01", "A02"):
        store.write_bytes(f"Input/2018-12-05/b/{name}/x.txt", b"x")
    executor = ScriptedExecutor()
    db_path = str(tmp_path / "runs.sqlite")
    first = Engine(store, executor, RunDB(db_path))
    run = first.start_run(first.plan("2018-12-05", "b", "wordcount", Resources(retries=0)), "alice")
    scheduler = PollScheduler(first.poll, 0.05)
    scheduler.start()
    executor.set("A01", JobState.SUCCEEDED, exit_code=0)
    wait_until(lambda: RunDB(db_path).job(run.id, "A01").state == JobState.SUCCEEDED)
    scheduler.shutdown()  # the process "stops"

    executor.set("A02", JobState.SUCCEEDED, exit_code=0)
    second = Engine(store, executor, RunDB(db_path))  # a restarted process: nothing but the database
    resumed = PollScheduler(second.poll, 0.05)
    resumed.start()
    try:
        wait_until(lambda: second.get_run(run.id).state == RunState.SUCCEEDED)
    finally:
        resumed.shutdown()
    assert len(executor.submit_calls) == 2


def test_a_failing_poll_does_not_stop_the_schedule() -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")

    scheduler = PollScheduler(flaky, 0.05)
    scheduler.start()
    try:
        wait_until(lambda: len(calls) >= 3)
    finally:
        scheduler.shutdown()
