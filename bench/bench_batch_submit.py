"""Submitting 2,000 analyses to AWS Batch (moto), and one poll cycle over 2,000 active jobs.

    python bench/bench_batch_submit.py [--jobs 2000]

moto runs in a separate process (Docker-less simple mode), so this process's CPU time is our own
(engine, executor, botocore) and not the fake endpoint's. Prints:
- wall time of a naive sequential SubmitJob loop and of the engine's submission (`Cyto.start`:
  BatchExecutor through the engine's bounded pool, run database writes included), both in this run;
- our CPU time per submitted job;
- API calls of one poll cycle over all the jobs while they are QUEUED/RUNNING in the run database.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve() -> None:
    import logging

    from tests.aws.server import CountingMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = CountingMotoServer()
    server.start()
    server.moto_api("config", {"batch": {"use_docker": False}})
    print(server.endpoint, flush=True)
    sys.stdin.read()  # until the parent closes our stdin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        endpoint = server.stdout.readline().strip()  # type: ignore[union-attr]
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        run(args.jobs)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)


def run(jobs: int) -> None:
    import boto3

    from bot import aws
    from bot.api import Cyto
    from bot.executors.batch import BatchExecutor
    from bot.settings import Settings
    from bot.states import JobState
    from tests.aws.batch_setup import make_batch, put_text

    setup = make_batch()
    date, batch = "2024-01-02", "bench"
    put_text(setup.bucket, {f"Input/{date}/{batch}/A{i:05d}/x.txt": "x" for i in range(jobs)})

    naive = aws.client("batch")
    naive.submit_job(jobName="warm-up", jobQueue=setup.queue, jobDefinition=setup.definition)
    cpu, started = time.process_time(), time.perf_counter()
    for i in range(jobs):
        naive.submit_job(jobName=f"naive-{i}", jobQueue=setup.queue, jobDefinition=setup.definition)
    naive_wall, naive_cpu = time.perf_counter() - started, time.process_time() - cpu

    calls: Counter[str] = Counter()
    executor = BatchExecutor(setup.queue, setup.definition)
    executor.batch.meta.events.register("before-call.batch", lambda model, **_: calls.update([model.name]))
    with tempfile.TemporaryDirectory() as tmp:
        cyto = Cyto(Settings(store=f"s3://{setup.bucket}", executor="batch", db=f"{tmp}/runs.sqlite",
                             batch_job_queue=setup.queue, batch_job_definition=setup.definition), executor=executor)
        plan = cyto.plan(date, batch, pipeline="wordcount")
        cpu, started = time.process_time(), time.perf_counter()
        run_record = cyto.start(plan, "bench")
        ours_wall, ours_cpu = time.perf_counter() - started, time.process_time() - cpu
        submitted = calls["SubmitJob"]

        calls.clear()
        summary = cyto.status(run_record.id)
        active = summary.count(JobState.QUEUED) + summary.count(JobState.RUNNING)  # what an executor holds
        cyto.poll()
        poll_calls = dict(calls)

    print(f"jobs submitted: naive {jobs}, ours {submitted} (workers: {executor.submit_concurrency})")
    print(f"naive sequential SubmitJob loop: {naive_wall:.2f} s wall ({naive_wall / jobs * 1000:.2f} ms/job)")
    print(f"ours (Cyto.start: record, claim, SubmitJob, record): {ours_wall:.2f} s wall "
          f"({ours_wall / submitted * 1000:.2f} ms/job), speed-up x{naive_wall / ours_wall:.1f}")
    print(f"our CPU time: {ours_cpu:.2f} s = {ours_cpu / submitted * 1000:.2f} ms/job "
          "(this process: engine, SQLite, botocore signing and parsing)")
    print(f"of which botocore alone (naive loop CPU): {naive_cpu / jobs * 1000:.2f} ms/job; "
          f"ours beyond it: {(ours_cpu / submitted - naive_cpu / jobs) * 1000:.2f} ms/job")
    print(f"one poll cycle over {active} active jobs: {poll_calls} "
          f"(DescribeJobs goal: ceil({active}/100) = {-(-active // 100)})")
    boto3.DEFAULT_SESSION = None


if __name__ == "__main__":
    main()
