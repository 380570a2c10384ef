"""Engine overhead: plan, record and poll 10,000 no-op analyses.

The executor here is an in-memory one whose jobs finish when told, so every millisecond measured
is the engine's own (listing, SQLite, transitions). Goal: <= 1 ms per analysis per poll cycle.

    python bench/bench_engine.py [--analyses 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.engine import Engine
from bot.executors import Resources
from bot.ledger import RunDB
from bot.states import JobState, RunState
from bot.store.local import LocalStore
from tests.scripted_executor import ScriptedExecutor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--analyses", type=int, default=10_000)
    args = parser.parse_args()
    n = args.analyses
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        batch = root / "store/Input/2020-01-01/big"
        for i in range(n):
            (batch / f"a{i:05d}").mkdir(parents=True)
        executor = ScriptedExecutor()
        engine = Engine(LocalStore(root / "store"), executor, RunDB(str(root / "runs.sqlite")))

        t0 = time.perf_counter()
        plan = engine.plan("2020-01-01", "big", "wordcount", Resources(retries=1))
        t1 = time.perf_counter()
        run = engine.start_run(plan, "bench")
        t2 = time.perf_counter()

        def cycle(state: JobState | None) -> float:
            if state is not None:
                for job_id in list(executor.states):
                    executor.states[job_id] = executor.states[job_id].__class__(job_id, state, exit_code=0)
            start = time.perf_counter()
            engine.poll()
            return time.perf_counter() - start

        idle = cycle(None)
        running = cycle(JobState.RUNNING)
        done = cycle(JobState.SUCCEEDED)
        t3 = time.perf_counter()
        summary = engine.summary(run.id)
        t4 = time.perf_counter()
        assert engine.get_run(run.id).state == RunState.SUCCEEDED

    ms = 1000 / n
    print(f"analyses: {n}")
    print(f"plan (list the batch):           {(t1 - t0) * ms:.4f} ms per analysis ({t1 - t0:.3f} s)")
    print(f"record + submit:                 {(t2 - t1) * ms:.4f} ms per analysis ({t2 - t1:.3f} s)")
    print(f"poll, nothing changed:           {idle * ms:.4f} ms per analysis per cycle ({idle:.3f} s)")
    print(f"poll, all became RUNNING:        {running * ms:.4f} ms per analysis per cycle ({running:.3f} s)")
    print(f"poll, all SUCCEEDED + finish:    {done * ms:.4f} ms per analysis per cycle ({done:.3f} s)")
    print(f"summary:                         {(t4 - t3) * ms:.4f} ms per analysis ({t4 - t3:.3f} s)")
    print(f"worst poll cycle: {max(idle, running, done) * ms:.4f} ms per analysis (goal <= 1 ms); "
          f"describe calls: {executor.describe_calls[:3]}")
    print(f"final: {summary.count(JobState.SUCCEEDED)} succeeded")


if __name__ == "__main__":
    main()
