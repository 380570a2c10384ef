"""Leader-free polling: several engines on one ledger (bot replicas, a CLI, a notebook) split each
poll cycle's runs by leases, so no job is described or submitted twice by overlapping cycles, and a
run whose poller died is picked up: at once when it died on this host, after the lease otherwise."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bot.engine import Engine
from bot.engine.polling import POLL_LEASE_S
from bot.executors import JobStatus
from bot.ledger import RunDB
from bot.states import RunState
from tests.scripted_executor import ScriptedExecutor
from tests.test_ledger import DATE, make_engine, start


class SlowDescribe(ScriptedExecutor):
    """Describes slowly and remembers who asked about which job, so overlapping cycles would show."""

    def __init__(self) -> None:
        super().__init__()
        self.described: list[tuple[str, str]] = []

    def describe(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self.described += [(threading.current_thread().name, j) for j in job_ids]
        time.sleep(0.5)  # the other engine's cycle starts meanwhile
        return super().describe(job_ids)


def other_runs(engine: Engine, count: int) -> list[str]:
    ids = []
    for i in range(count):
        engine.store.write_bytes(f"Input/{DATE}/other{i}/A000/x.txt", b"x\n")
        ids.append(engine.start_run(engine.plan(DATE, f"other{i}", "wordcount"), "alice").id)
    return ids


def test_overlapping_cycles_of_two_engines_never_describe_a_job_twice(tmp_path: Path, ledger_url: str) -> None:
    executor = SlowDescribe()
    first, _, _ = make_engine(tmp_path, ledger_url, analyses=4, executor=executor)
    second = Engine(first.store, executor, RunDB(ledger_url))
    runs = [start(first).id, *other_runs(first, 3)]
    for _ in range(3):
        executor.described.clear()
        threads = [threading.Thread(target=e.poll, name=name) for name, e in (("one", first), ("two", second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = [j for _, j in executor.described]
        assert len(ids) == len(set(ids)) == 7, executor.described  # each job once, by one of them
    executor.finish_all()
    first.poll()
    assert {first.get_run(r).state for r in runs} == {RunState.SUCCEEDED}
    assert len(executor.submit_calls) == len(set(executor.submit_calls)) == 7


def test_a_run_leased_by_a_poller_on_another_host_waits_for_its_lease_to_expire(tmp_path: Path,
                                                                                ledger_url: str) -> None:
    now = [1_800_000_000.0]
    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=2)
    engine.clock = lambda: now[0]
    run = start(engine, submit=False)
    assert db.lease_runs([run.id], "elsewhere:1234:ab:poll", now[0], POLL_LEASE_S) == [run.id]  # then it died
    engine.poll()
    assert executor.submit_calls == [] and executor.describe_calls == []
    now[0] += POLL_LEASE_S + 1
    engine.poll()
    assert sorted(executor.submit_calls) == sorted(a.job_name for j in db.jobs(run.id) for a in db.attempts(j.id))
    assert db.query("SELECT COUNT(*) FROM run_leases")[0][0] == 0, "released at the end of the cycle"


def test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(tmp_path: Path, ledger_url: str) -> None:
    import socket

    engine, executor, db = make_engine(tmp_path, ledger_url, analyses=2)
    run = start(engine, submit=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = f"{socket.gethostname()}:{dead.stdout.strip()}:ab:poll"
    assert db.lease_runs([run.id], holder, time.time(), POLL_LEASE_S) == [run.id]
    assert db.lease_runs([run.id], "elsewhere:1:cd:poll", time.time(), POLL_LEASE_S) == [run.id]  # taken over
    assert db.lease_runs([run.id], "elsewhere:2:ef:poll", time.time(), POLL_LEASE_S) == []  # held, alive
    db.release_runs([run.id], "elsewhere:1:cd:poll")
    engine.poll()
    assert len(executor.submit_calls) == 2
