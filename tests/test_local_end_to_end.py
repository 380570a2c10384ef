"""A real batch through the local executor and the real container entrypoint (wordcount)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.api import Cyto
from bot.cli.progress import summary_lines
from bot.executors import JobSpec, Resources
from bot.executors.local import LocalExecutor
from bot.states import JobState, RunState
from container.contract import JobEnvironment
from tests.timeouts import deadline_after, seconds

pytestmark = pytest.mark.slow  # every test here runs jobs as processes

DATE, BATCH = "2018-12-05", "batch-7"

TEXTS = {
    "A01": {"a.txt": b"one two three\nfour\n", "b.txt": b"  leading spaces\n\n\ttabs\there\n"},
    "A02": {"notes.txt": b"no trailing newline"},
    "A03": {"bin.dat": bytes(range(256)) * 3, "mixed.txt": "caf\u00e9 na\u00efve r\u00e9sum\u00e9\n".encode()},
    "A04": {"empty.txt": b"", "one.txt": b"x\n"},
}


def write_batch(store_root: Path) -> None:
    for analysis, files in TEXTS.items():
        for name, data in files.items():
            path = store_root / "Input" / DATE / BATCH / analysis / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    broken = store_root / "Input" / DATE / BATCH / "A05-broken"
    broken.mkdir(parents=True)
    (broken / "present.txt").write_text("here\n")
    (broken / "params.json").write_text(json.dumps({"files": ["present.txt", "missing.txt"]}))


def gnu_wc(path: Path) -> tuple[int, int, int]:
    out = subprocess.run(["wc", "-l", "-w", "-c", str(path)], capture_output=True, text=True, check=True,
                         env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout.split()
    return int(out[0]), int(out[1]), int(out[2])


def test_batch_outputs_equal_wc_and_bad_input_is_reported_without_retries(cyto: Cyto) -> None:
    store_root = Path(cyto.store.uri)
    write_batch(store_root)
    plan = cyto.plan(DATE, BATCH, pipeline="wordcount", retries=2)
    run = cyto.engine.start_run(plan, "tester")
    summary = cyto.wait(run.id, interval=0.1, timeout=seconds(120))

    assert summary.run.state == RunState.FAILED
    assert summary.count(JobState.SUCCEEDED) == 4 and summary.count(JobState.FAILED) == 1
    for analysis, files in TEXTS.items():
        result = json.loads((store_root / "Output" / DATE / BATCH / analysis / "wordcount.json").read_text())
        counted = {f["path"]: (f["lines"], f["words"], f["bytes"]) for f in result["files"]}
        for name in files:
            assert counted[name] == gnu_wc(store_root / "Input" / DATE / BATCH / analysis / name), name
        assert (store_root / "Output" / DATE / BATCH / analysis / "result.json").exists()
        assert (store_root / "Logs" / DATE / BATCH / analysis / run.id / "attempt-1.log").exists()

    broken = cyto.db.job(run.id, "A05-broken")
    attempts = cyto.db.attempts(broken.id)
    # Bad input (exit 2) would fail the same way again: reported at once, not retried (--retries 2).
    assert [a.state for a in attempts] == [JobState.FAILED]
    assert all(a.exit_code == 2 for a in attempts)
    assert "missing.txt" in broken.reason
    assert broken.failure_rule.startswith("bad input or parameters (exit code 2): not retried automatically")
    assert (store_root / "Logs" / DATE / BATCH / "A05-broken" / run.id / "attempt-1.log").exists()
    excerpt = cyto.logs(run.id, "A05-broken")
    assert excerpt.attempt == 1
    assert excerpt.excerpt is not None and "missing.txt" in excerpt.excerpt.text.splitlines()[-1]

    # The scientist adds the missing file and retries: the run succeeds.
    (store_root / "Input" / DATE / BATCH / "A05-broken" / "missing.txt").write_text("now here\n")
    assert cyto.retry(run.id, "A05-broken", by="tester") == ["A05-broken"]
    summary = cyto.wait(run.id, interval=0.1, timeout=seconds(60))
    assert summary.run.state == RunState.SUCCEEDED
    assert [a.state for a in cyto.db.attempts(broken.id)][-1] == JobState.SUCCEEDED


def spec(name: str, timeout_s: int = 3600) -> JobSpec:
    env = JobEnvironment(run_id="r1", attempt=1, date=DATE, batch=BATCH, analysis=name, pipeline="wordcount",
                         input_uri="file:///nowhere/", output_uri="file:///nowhere/", logs_uri="file:///nowhere/")
    return JobSpec(name, env, Resources(timeout_s=timeout_s))


def wait_for(executor: LocalExecutor, job_id: str, states: set[JobState], timeout: float = seconds(20)) -> JobState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = executor.describe([job_id])[job_id].state
        if state in states:
            return state
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never reached {states}")


def test_local_executor_runs_at_most_n_at_once_and_honours_timeout_and_cancel(tmp_path: Path) -> None:
    marker = tmp_path / "concurrency"
    script = ("import os, sys, time, fcntl\n"
              f"path = {str(marker)!r}\n"
              "def bump(d):\n"
              "    with open(path + '.lock', 'w') as l:\n"
              "        fcntl.flock(l, fcntl.LOCK_EX)\n"
              "        n = int(open(path).read()) if os.path.exists(path) else 0\n"
              "        open(path, 'w').write(str(n + d))\n"
              "        open(path + '.max', 'a').write(str(n + d) + '\\n')\n"
              "bump(1); time.sleep(float(os.environ.get('SLEEP', '0.5'))); bump(-1)\n"
              "print('done', os.environ['CYTO_ANALYSIS'])\n")
    executor = LocalExecutor(tmp_path / "spool", max_parallel=2, command=[sys.executable, "-c", script])
    ids = [executor.submit(spec(f"job{i}")) for i in range(5)]
    for job_id in ids:
        assert wait_for(executor, job_id, {JobState.SUCCEEDED, JobState.FAILED}) == JobState.SUCCEEDED
    peak = max(int(x) for x in (tmp_path / "concurrency.max").read_text().split())
    assert peak == 2
    assert "done job3" in executor.read_log(executor.describe([ids[3]])[ids[3]])

    slow = LocalExecutor(tmp_path / "spool2", max_parallel=2,
                         command=[sys.executable, "-c", "import time; print('start', flush=True); time.sleep(60)"])
    timed = slow.submit(spec("timed", timeout_s=1))
    cancelled = slow.submit(spec("cancelled"))
    wait_for(slow, cancelled, {JobState.RUNNING})
    slow.cancel(cancelled, "cancelled by test")
    assert wait_for(slow, cancelled, {JobState.CANCELLED, JobState.FAILED, JobState.SUCCEEDED}) == JobState.CANCELLED
    assert wait_for(slow, timed, {JobState.FAILED, JobState.SUCCEEDED}) == JobState.FAILED
    assert slow.describe([timed])[timed].reason == "timed out after 1 s"
    queued = LocalExecutor(tmp_path / "spool3", max_parallel=1, command=[sys.executable, "-c", "pass"])
    job = queued.submit(spec("never-started"))
    queued.cancel(job, "cancelled by test")
    assert queued.describe([job])[job].state == JobState.CANCELLED
    assert queued.find("never-started") == job and queued.find("other") is None


def test_a_job_whose_runner_was_killed_is_reported_lost_not_left_running(tmp_path: Path) -> None:
    import json as _json
    import os
    import signal

    executor = LocalExecutor(tmp_path / "spool", max_parallel=1,
                             command=[sys.executable, "-c", "import time; time.sleep(60)"])
    job = executor.submit(spec("victim"))
    wait_for(executor, job, {JobState.RUNNING})
    claim = _json.loads((tmp_path / "spool" / "jobs" / job / "claimed.json").read_text())
    os.killpg(os.getpgid(claim["pid"]), signal.SIGKILL)  # the runner and its job, as a reboot would
    deadline = deadline_after(10)
    while time.monotonic() < deadline:
        try:
            os.kill(claim["pid"], 0)
        except ProcessLookupError:
            break
        executor.pump()  # reaps the runner, which was started by this executor
        time.sleep(0.05)
    status = executor.describe([job])[job]
    assert status.state == JobState.FAILED
    assert status.reason == "the job's process disappeared (killed, or the machine restarted)"


FLAKY_JOB = """
import os, sys
attempt, analysis = os.environ["CYTO_ATTEMPT"], os.environ["CYTO_ANALYSIS"]
print(f"{analysis} attempt {attempt} with {os.environ['CYTO_MEMORY_MIB']} MiB", flush=True)
if attempt == "1" and analysis == "A01-flaky":
    print("ERROR: the network share went away", flush=True)
    sys.exit(1)
if analysis == "A02-hungry" and os.environ["CYTO_MEMORY_MIB"] == "1024":
    print("ERROR: MemoryError: cannot allocate 3 GiB", flush=True)
    sys.exit(1)
os.execv(sys.executable, [sys.executable, "-m", "container.entrypoint"])
"""


def test_automatic_retries_follow_the_failure_policy_on_real_processes(cyto_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """A transient failure is retried as --retries says; running out of memory is retried once with
    twice the memory even with --retries 0; each rule is recorded where people read it."""
    script = tmp_path / "flaky_job.py"
    script.write_text(FLAKY_JOB)
    cyto = Cyto.from_env({**cyto_env, "CYTO_LOCAL_COMMAND": f"{sys.executable} {script}"})
    store_root = Path(cyto.store.uri)
    for name in ("A01-flaky", "A02-hungry", "A03-fine"):
        folder = store_root / "Input" / DATE / BATCH / name
        folder.mkdir(parents=True)
        (folder / "x.txt").write_text("one two\n")

    flaky = cyto.engine.start_run(cyto.plan(DATE, BATCH, pipeline="wordcount", retries=1), "tester")
    summary = cyto.wait(flaky.id, interval=0.1, timeout=seconds(120))
    job = cyto.db.job(flaky.id, "A01-flaky")
    assert job.state == JobState.SUCCEEDED and job.attempt == 2
    first = cyto.db.attempts(job.id)[0]
    assert first.failure_rule == "retried automatically (1 of 1 automatic retry, --retries)"
    assert "the network share went away" in (first.reason or "")

    hungry = cyto.db.job(flaky.id, "A02-hungry")  # 2048 MiB by default: not hungry in this run
    assert hungry.state == JobState.SUCCEEDED and hungry.attempt == 1
    assert summary.run.state == RunState.SUCCEEDED

    small = cyto.engine.start_run(cyto.plan(DATE, BATCH, pipeline="wordcount", retries=0, memory_mib=1024), "tester")
    summary = cyto.wait(small.id, interval=0.1, timeout=seconds(120))
    hungry = cyto.db.job(small.id, "A02-hungry")
    assert hungry.state == JobState.SUCCEEDED and hungry.attempt == 2
    assert cyto.db.attempts(hungry.id)[1].resources == {"memory_mib": 2048}
    assert "out of memory at 1024 MiB: retried once automatically with 2048 MiB" in (hungry.failure_rule or "")
    flaky_again = cyto.db.job(small.id, "A01-flaky")
    assert flaky_again.state == JobState.FAILED
    assert flaky_again.failure_rule == "not retried automatically (--retries 0)"
    assert any("not retried automatically (--retries 0)" in line
               for line in summary_lines(summary))
