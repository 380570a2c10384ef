"""Engine overhead on each ledger engine: plan, record and poll 10,000 no-op analyses, SQLite and
PostgreSQL side by side, through the one session API (`bot.api.Cyto`, built from Settings with the
ledger's URL).

The executor here is an in-memory one whose jobs finish when told, so every millisecond measured
is the engine's own (listing, the ledger, transitions). Goals: <= 1 ms per analysis per poll cycle;
PostgreSQL <= 2x SQLite.

PostgreSQL is `--postgres URL` (a server on which the bench may create and drop a database), else
`$CYTO_TEST_POSTGRES`, else a throwaway cluster from Debian's binaries (tests/postgres.py).

    python bench/bench_engine.py [--analyses 10000] [--postgres postgresql://user@host/db]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.api import Cyto
from bot.settings import Settings
from bot.states import JobState, RunState
from tests.scripted_executor import ScriptedExecutor

STEPS = ("plan (list the batch)", "record + submit", "poll, nothing changed", "poll, all became RUNNING",
         "poll, all SUCCEEDED + finish", "summary")
POLLS = STEPS[2:5]


def measure(root: Path, db_url: str, n: int) -> dict[str, float]:
    """Seconds per step of one run of `n` analyses on the ledger at `db_url`."""
    batch = root / "store/Input/2020-01-01/big"
    for i in range(n):
        (batch / f"a{i:05d}").mkdir(parents=True, exist_ok=True)
    executor = ScriptedExecutor()
    cyto = Cyto(Settings(store=str(root / "store"), db=db_url), executor=executor)
    seconds: dict[str, float] = {}

    def timed(step: str, action):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        result = action()
        seconds[step] = time.perf_counter() - start
        return result

    plan = timed(STEPS[0], lambda: cyto.plan("2020-01-01", "big", pipeline="wordcount", retries=1))
    run = timed(STEPS[1], lambda: cyto.start(plan, "bench"))

    def become(state: JobState) -> None:
        for job_id in list(executor.states):
            executor.states[job_id] = executor.states[job_id].__class__(job_id, state, exit_code=0)

    timed(STEPS[2], cyto.poll)
    become(JobState.RUNNING)
    timed(STEPS[3], cyto.poll)
    become(JobState.SUCCEEDED)
    timed(STEPS[4], cyto.poll)
    summary = timed(STEPS[5], lambda: cyto.status(run.id))
    assert cyto.get_run(run.id).state == RunState.SUCCEEDED
    assert summary.count(JobState.SUCCEEDED) == n
    cyto.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--analyses", type=int, default=10_000)
    parser.add_argument("--postgres", default=os.environ.get("CYTO_TEST_POSTGRES", ""),
                        help="a PostgreSQL server URL on which the bench may create a database")
    args = parser.parse_args()
    n = args.analyses
    from tests.postgres import Server, ThrowawayCluster

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            server = Server(args.postgres)
        else:
            cluster = ThrowawayCluster()
            server = cluster.start()
            stack.callback(cluster.stop)
        database = server.create_database()
        stack.callback(server.drop_database, database)
        results = {"SQLite": measure(Path(tmp) / "sqlite", f"sqlite:///{tmp}/runs.sqlite", n),
                   "PostgreSQL": measure(Path(tmp) / "postgres", database, n)}

    ms = 1000 / n
    print(f"analyses: {n}; ms per analysis (seconds in all)")
    print(f"{'':32} {'SQLite':>18} {'PostgreSQL':>18} {'ratio':>7}")
    for step in STEPS:
        lite, pg = results["SQLite"][step], results["PostgreSQL"][step]
        print(f"{step + ':':32} {lite * ms:8.4f} ({lite:6.2f} s) {pg * ms:8.4f} ({pg:6.2f} s) {pg / lite:6.2f}x")
    for engine, seconds in results.items():
        worst = max(seconds[step] for step in POLLS) * ms
        print(f"worst poll cycle on {engine}: {worst:.4f} ms per analysis (goal <= 1 ms)")
    record_poll = {e: sum(s[step] for step in (STEPS[1], *POLLS)) for e, s in results.items()}
    print(f"record + submit + polls: PostgreSQL / SQLite = {record_poll['PostgreSQL'] / record_poll['SQLite']:.2f}x "
          "(goal <= 2x)")


if __name__ == "__main__":
    main()
