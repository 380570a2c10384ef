"""Cancel a 2,000-analysis run at random moments during submission to AWS Batch (moto).

    python bench/bench_cancel.py [--jobs 2000] [--trials 20] [--seed 1]

moto runs in-process (ThreadedMotoServer); its Batch jobs are held in SUBMITTED, as on a busy queue
(moto's per-job thread, which would otherwise try Docker or poll a state machine every 0.5 s, is
replaced server-side by one that does nothing, the way tests/aws/batch_shim.py replaces it). For each trial a
new run is started; from another thread, after a random number of SubmitJob calls, the run is
cancelled the way a person's click does it (`Cyto.cancel`), while submission goes on. Then two polls.
Prints per trial and in total:
- orphaned executor jobs: Batch jobs of the run that nobody stopped (no CancelJob/TerminateJob of
  ours: their statusReason does not carry our "cyto: " mark) although they never finished (goal: 0);
- runs left stuck: runs still ACTIVE, or cancelling with a job not yet told to stop or a claim not
  resolved, after the polls (goal: 0). moto keeps a cancelled job's status as it was (it only sets
  the reason), so a run here ends CANCELLING rather than CANCELLED; on Batch the next poll closes it.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import os

    from moto.batch import models as batch_models
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")
    # Jobs stay SUBMITTED: nothing moves them, so "live" means "not stopped by us". CancelJob still
    # records its reason (with our "cyto: " mark) on the job.
    batch_models.Job.run = lambda self: None
    try:
        bench(args.jobs, args.trials, random.Random(args.seed))
    finally:
        server.stop()


def bench(jobs: int, trials: int, rng: random.Random) -> None:
    import boto3

    from tests.aws.batch_setup import make_batch, put_text

    setup = make_batch()
    date, batch = "2024-01-02", "bench"
    put_text(setup.bucket, {f"Input/{date}/{batch}/A{i:05d}/x.txt": "x" for i in range(jobs)})
    client = boto3.client("batch")
    total_orphans = total_stuck = 0
    print(f"{trials} trials: cancel a {jobs}-analysis run after a random number of SubmitJob calls")
    for trial in range(trials):
        orphans, stuck, cancel_after, count, elapsed = one_trial(setup, date, batch, jobs, rng, client)
        total_orphans += orphans
        total_stuck += stuck
        print(f"  trial {trial + 1:2d}: cancel after {cancel_after:4d} submits, {count:4d} submitted, "
              f"orphaned {orphans}, stuck {stuck} ({elapsed:.1f} s)")
    print(f"orphaned executor jobs: {total_orphans} (goal 0); runs left stuck: {total_stuck} (goal 0)")


def one_trial(setup: Any, date: str, batch: str, jobs: int, rng: random.Random,
              client: Any) -> tuple[int, int, int, int, float]:
    from bot.api import Cyto
    from bot.executors.batch import BatchExecutor
    from bot.executors.batch_states import CANCEL_MARK
    from bot.settings import Settings
    from bot.states import RunState

    executor = BatchExecutor(setup.queue, setup.definition)
    submitted: list[str] = []
    lock = threading.Lock()
    cancel_after = rng.randint(1, jobs - 1)
    fired = threading.Event()
    target: dict[str, Any] = {}

    def count_submit(parsed: Any, model: Any, **_: Any) -> None:
        if model.name != "SubmitJob" or "jobId" not in parsed:
            return
        with lock:
            submitted.append(parsed["jobId"])
            n = len(submitted)
        if n == cancel_after and not fired.is_set():
            fired.set()  # a person clicks Cancel now, from another thread
            threading.Thread(target=lambda: target["cyto"].cancel(target["run"], by="bench")).start()

    executor.batch.meta.events.register("after-call.batch", count_submit)
    with tempfile.TemporaryDirectory() as tmp:
        cyto = Cyto(Settings(store=f"s3://{setup.bucket}", executor="batch", db=f"{tmp}/runs.sqlite",
                             batch_job_queue=setup.queue, batch_job_definition=setup.definition), executor=executor)
        # Recorded held, then released and submitted here, so that the cancel thread knows the run's id.
        run = cyto.start(cyto.plan(date, batch, pipeline="wordcount", retries=0), "bench", hold=True)
        cyto.release(run.id, "bench", "bench")
        target.update(cyto=cyto, run=run.id)
        started = time.perf_counter()
        cyto.submit_pending(run.id)
        while fired.is_set() and cyto.get_run(run.id).state == RunState.ACTIVE:
            time.sleep(0.01)  # the cancel thread is still recording its intent
        cyto.poll()
        cyto.poll()
        elapsed = time.perf_counter() - started
        orphans = 0
        for start in range(0, len(submitted), 100):
            for job in client.describe_jobs(jobs=submitted[start:start + 100])["jobs"]:
                finished = job["status"] in ("FAILED", "SUCCEEDED")
                stopped = (job.get("statusReason") or "").startswith(CANCEL_MARK)
                orphans += not finished and not stopped
        stuck = int(cyto.get_run(run.id).state == RunState.ACTIVE or bool(cyto.pending_intents(run.id)))
    return orphans, stuck, cancel_after, len(submitted), elapsed


if __name__ == "__main__":
    main()
