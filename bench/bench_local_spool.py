"""Starting jobs does not slow down with history: 40 trivial jobs started and finished through the
engine and the local executor, with an empty spool and with 5,000 finished jobs in it, side by side
in the same run. Goal: within 20 % of each other.

The finished jobs are made by the executor's own code (submit, claim, and the runner's `finish`),
without running a process each, so the spool holds exactly what 5,000 real jobs would leave; the
hourly prune has just run, as in a spool in steady use (pruning happens in a runner that has run out
of work, never in the engine's path).

    python bench/bench_local_spool.py [--jobs 40] [--history 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.api import Cyto
from bot.executors import JobSpec, Resources
from bot.executors.local import LocalExecutor
from bot.executors.local_runner import claim
from bot.executors.local_spool import SPEC, finish, log_path, read_json
from bot.settings import Settings
from bot.states import RunState
from container.contract import JobEnvironment

TRIVIAL = (sys.executable, "-c", "pass")


def add_history(spool: Path, count: int) -> None:
    executor = LocalExecutor(spool, command=TRIVIAL)
    for i in range(count):
        name = f"cyto-history-{i:05d}-a1"
        env = JobEnvironment(run_id="old", attempt=1, date="2019-01-01", batch="old", analysis=f"a{i}",
                             pipeline="wordcount", input_uri="file:///old/", output_uri="file:///old/",
                             logs_uri="file:///old/")
        executor.submit(JobSpec(name, env, Resources()))
        job_dir = spool / "jobs" / name
        (spool / "queue" / read_json(job_dir / SPEC)["queue_marker"]).unlink()  # taken, as by a runner
        claim(job_dir)
        log_path(spool, name).write_text("a 1 2 3\n")
        finish(job_dir, {"state": "SUCCEEDED", "exit_code": 0, "reason": None,
                         "started_at": time.time(), "stopped_at": time.time()})
    executor.prune(force=True)  # the hourly prune has just run, as it has in a spool in steady use


def one_run(jobs: int, history: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) to start and finish `jobs` trivial jobs."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        for i in range(jobs):
            folder = root / "store/Input/2020-01-01/bench" / f"a{i:03d}"
            folder.mkdir(parents=True)
            (folder / "x.txt").write_text("x")
        add_history(root / "spool", history)
        os.sync()  # the history's writeback must not land in the timed part
        cyto = Cyto(Settings(store=str(root / "store"), db=str(root / "runs.sqlite"),
                             local_spool=str(root / "spool"), local_command=TRIVIAL))
        start, cpu = time.perf_counter(), time.process_time()
        run = cyto.run("2020-01-01", "bench", pipeline="wordcount", requested_by="bench")
        summary = cyto.wait(run.id, interval=0.05)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert summary.run.state == RunState.SUCCEEDED, summary.run.state
        return wall, cpu


def pump_time(history: int, rounds: int = 200) -> float:
    """Seconds for one look at the spool for a free slot (what every job start and poll pays)."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        add_history(spool, history)
        executor = LocalExecutor(spool, max_parallel=1, command=TRIVIAL)
        start = time.perf_counter()
        for _ in range(rounds):
            executor.pump()
        return (time.perf_counter() - start) / rounds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--history", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    empty, full = [], []
    for _ in range(args.repeat):  # interleaved, so a busy moment on the machine hits both alike
        empty.append(one_run(args.jobs, 0))
        full.append(one_run(args.jobs, args.history))
    # On a shared machine the fastest of several runs is the steadiest wall figure; the engine's own
    # CPU time (submitting, polling, starting jobs) does not depend on what else the machine runs.
    e, f = min(w for w, _ in empty), min(w for w, _ in full)
    print(f"{args.jobs} trivial jobs, start to finish (best of {args.repeat}; median; engine CPU median):")
    for label, runs in (("empty spool:", empty), (f"{args.history:,} finished jobs in spool:", full)):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"  {label:<32} {min(walls):.2f} s  ({statistics.median(walls):.2f} s; "
              f"{statistics.median(cpus):.2f} s CPU)")
    print(f"  difference: {100 * (f - e) / e:+.0f} % (goal: within 20 %)")
    p0, p1 = pump_time(0), pump_time(args.history)
    print(f"one look for a free slot: {1000 * p0:.2f} ms empty, {1000 * p1:.2f} ms with {args.history:,} finished jobs")


if __name__ == "__main__":
    main()
