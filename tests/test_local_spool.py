"""The local executor's spool: live jobs apart from history, finished jobs pruned, and a runner that
dies takes its job (and the job's children) with it before the attempt is retried."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from bot.api import Cyto
from bot.executors import JobSpec, Resources
from bot.executors.local import PRUNED_STAMP, LocalExecutor
from bot.executors.local_spool import LOST_REASON
from bot.settings import Settings
from bot.states import EventKind, JobState, RunState
from container.contract import JobEnvironment
from tests.spool_helpers import spool_job_names
from tests.timeouts import seconds

pytestmark = pytest.mark.slow

DATE, BATCH = "2018-12-05", "b7"


def spec(name: str, timeout_s: int = 3600) -> JobSpec:
    env = JobEnvironment(run_id="r1", attempt=1, date=DATE, batch=BATCH, analysis=name, pipeline="wordcount",
                         input_uri="file:///nowhere/", output_uri="file:///nowhere/", logs_uri="file:///nowhere/")
    return JobSpec(name, env, Resources(timeout_s=timeout_s))


def until(predicate, timeout: float = seconds(30), what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def running(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


# A job that starts a child in its own process group, records both pids, and runs until killed.
VICTIM = """
import json, os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
path = os.path.join(os.environ["PIDS_DIR"], os.environ["CYTO_ATTEMPT"] + ".json")
with open(path + ".tmp", "w") as fh:
    json.dump({"job": os.getpid(), "child": child.pid}, fh)
os.replace(path + ".tmp", path)
print("running", flush=True)
time.sleep(300)
"""


def test_a_killed_runner_takes_its_job_with_it_before_the_retry(tmp_path: Path, monkeypatch) -> None:
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    monkeypatch.setenv("PIDS_DIR", str(pids_dir))
    store = tmp_path / "store"
    (store / "Input" / DATE / BATCH / "A01").mkdir(parents=True)
    (store / "Input" / DATE / BATCH / "A01" / "x.txt").write_text("x\n")
    spool = tmp_path / "spool"
    cyto = Cyto(Settings(store=str(store), db=str(tmp_path / "runs.sqlite"), local_spool=str(spool),
                         local_command=(sys.executable, "-c", VICTIM)))
    seen_when_lost: list[tuple[bool, bool]] = []
    first: dict[str, int] = {}

    def poll_and_look() -> bool:
        """One poll; right after the one that marked attempt 1 lost, whether its processes still run."""
        cyto.poll()
        if not seen_when_lost and any(e.kind == EventKind.JOB_RETRYING and e.attempt == 1
                                      for e in cyto.db.events(0, run_id=run.id)):
            seen_when_lost.append((running(first["job"]), running(first["child"])))
        return cyto.db.job(run.id, "A01").attempt == 2

    run = cyto.run(DATE, BATCH, pipeline="wordcount", retries=1, requested_by="tester")
    first.update(until(lambda: json.loads((pids_dir / "1.json").read_text()) if (pids_dir / "1.json").exists()
                       else None, what="attempt 1 to start"))
    job = cyto.db.job(run.id, "A01")
    name = cyto.db.attempt(job.id, 1).job_name
    runner = json.loads((spool / "jobs" / name / "claimed.json").read_text())["pid"]
    assert running(first["job"]) and running(first["child"])
    os.kill(runner, signal.SIGKILL)
    try:
        until(poll_and_look, what="the retry")
        assert seen_when_lost == [(False, False)]  # job and child were gone when the attempt was marked lost
        lost = cyto.db.attempt(job.id, 1)
        assert lost.state == JobState.FAILED and lost.reason == LOST_REASON
        second = until(lambda: json.loads((pids_dir / "2.json").read_text()) if (pids_dir / "2.json").exists()
                       else None, what="attempt 2 to start")
        assert running(second["job"]) and not running(first["job"]) and not running(first["child"])
    finally:
        cyto.cancel(run.id, by="tester")
        until(lambda: (cyto.poll(), cyto.db.run(run.id).state.is_finished)[1], what="the cancel")
        for pid in first.values():
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    assert cyto.db.run(run.id).state == RunState.CANCELLED


def test_finished_jobs_leave_the_live_spool_but_keep_result_and_log(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "spool", max_parallel=2,
                             command=[sys.executable, "-c", "import os; print('hi from', os.environ['CYTO_ANALYSIS'])"])
    ids = [executor.submit(spec(f"job{i}")) for i in range(4)]
    executor.flush()
    until(lambda: all(s.state == JobState.SUCCEEDED for s in executor.describe(ids).values()), what="4 jobs")
    spool = tmp_path / "spool"
    # A runner records the result before it removes the live folder (a crash between the two leaves
    # a finished job, never a lost one), so the live spool empties an instant after the last result.
    until(lambda: os.listdir(spool / "jobs") == [], what="the live spool to empty")
    assert os.listdir(spool / "queue") == []
    assert sorted(os.listdir(spool / "done")) == [f"job{i}.json" for i in range(4)]
    statuses = executor.describe(ids)
    for i, job_id in enumerate(ids):
        assert statuses[job_id].log_ref == str(spool / "logs" / f"job{i}.log")
        assert executor.read_log(statuses[job_id]) == f"hi from job{i}\n"
        assert executor.find(job_id) == job_id
    executor.submit(spec("job0"))  # submitting a finished name again does not queue it twice
    assert os.listdir(spool / "queue") == []
    executor.submit(spec("waiting"))
    assert spool_job_names(executor.spool) == [*ids, "waiting"]


def test_finished_jobs_older_than_keep_days_are_pruned_by_a_runner_out_of_work(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    executor = LocalExecutor(spool, max_parallel=1, command=[sys.executable, "-c", "print('x')"], keep_days=2)
    ids = [executor.submit(spec(f"job{i}")) for i in range(3)]
    executor.flush()
    until(lambda: all(s.state == JobState.SUCCEEDED for s in executor.describe(ids).values()), what="3 jobs")
    until(lambda: (spool / PRUNED_STAMP).exists(), what="the runner to prune when out of work")
    old = time.time() - 3 * 86400
    for path in (spool / "done" / "job0.json", spool / "logs" / "job0.log"):
        os.utime(path, (old, old))
    assert executor.prune() == 0  # pruned less than an hour ago: not yet
    assert (spool / "done" / "job0.json").exists()
    (spool / PRUNED_STAMP).unlink()
    executor.submit(spec("job3"))
    executor.flush()
    until(lambda: not (spool / "done" / "job0.json").exists(), what="a runner to prune job0")
    assert not (spool / "logs" / "job0.log").exists()
    statuses = executor.describe([*ids, "job3"])
    assert "job0" not in statuses
    assert statuses["job1"].state == JobState.SUCCEEDED and executor.read_log(statuses["job1"]) == "x\n"
    assert until(lambda: executor.describe(["job3"])["job3"].state == JobState.SUCCEEDED, what="job3")


def test_a_cancelled_queued_job_leaves_the_queue(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    executor = LocalExecutor(spool, max_parallel=1, command=[sys.executable, "-c", "pass"])
    job = executor.submit(spec("waiting"))
    assert len(os.listdir(spool / "queue")) == 1
    executor.cancel(job, "cancelled by test")
    assert os.listdir(spool / "queue") == [] and os.listdir(spool / "jobs") == []
    assert executor.describe([job])[job].state == JobState.CANCELLED


def test_a_spool_of_the_earlier_layout_is_adopted(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    finished, waiting = spool / "old-finished", spool / "old-waiting"
    for folder in (finished, waiting):
        folder.mkdir(parents=True)
        (folder / "spec.json").write_text(json.dumps({
            "argv": [sys.executable, "-c", "print('adopted')"], "env": {}, "timeout_s": 60,
            "queued_at": time.time(), "max_parallel": 1}))
    (finished / "claimed.json").write_text(json.dumps({"pid": 1, "started_at": 1.0}))
    (finished / "output.log").write_text("old log\n")
    (finished / "result.json").write_text(json.dumps({"state": "SUCCEEDED", "exit_code": 0, "reason": None,
                                                      "started_at": 1.0, "stopped_at": 2.0}))
    executor = LocalExecutor(spool, max_parallel=1, command=[sys.executable, "-c", "pass"])
    assert not finished.exists() and not waiting.exists()
    status = executor.describe(["old-finished"])["old-finished"]
    assert status.state == JobState.SUCCEEDED and executor.read_log(status) == "old log\n"
    until(lambda: executor.describe(["old-waiting"])["old-waiting"].state == JobState.SUCCEEDED,
          what="the adopted job to run")
    assert executor.read_log(executor.describe(["old-waiting"])["old-waiting"]) == "adopted\n"


def test_keep_days_comes_from_the_environment(tmp_path: Path) -> None:
    from bot.api import build_executor
    from bot.settings import ConfigError

    settings = Settings.from_env({"CYTO_LOCAL_SPOOL": str(tmp_path / "spool"), "CYTO_LOCAL_KEEP_DAYS": "7"})
    assert build_executor(settings).keep_days == 7
    with pytest.raises(ConfigError, match="CYTO_LOCAL_KEEP_DAYS='a week': expected a number"):
        Settings.from_env({"CYTO_LOCAL_KEEP_DAYS": "a week"})
