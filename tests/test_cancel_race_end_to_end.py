"""Cancel racing submission on the real executors (issue 12, case 1): a cancel acknowledged while a
chunk of 100 is being submitted must leave no job running at the local executor or at AWS Batch
(moto, with the entrypoint shim holding jobs in RUNNABLE)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.engine import Engine
from bot.executors import Executor, JobSpec, JobStatus, Resources
from bot.executors.batch import BatchExecutor
from bot.executors.local import LocalExecutor
from bot.ledger import RunDB
from bot.states import JobState, RunState
from bot.store.local import LocalStore
from bot.store.s3 import S3Store
from tests.aws.batch_setup import BatchSetup, put_text
from tests.spool_helpers import spool_job_names

pytest_plugins = ["tests.aws.conftest"]
pytestmark = pytest.mark.slow
DATE, BATCH = "2024-01-02", "race"


class CancelsMidSubmission:
    """Wraps a real executor: at the `at`-th submission it lets `cancel` run to completion (as a
    person clicking Cancel in Slack would, from another thread) before that submission returns."""

    def __init__(self, inner: Executor, at: int) -> None:
        self.inner = inner
        self.at = at
        self.cancel_run: Any = None
        self.submitted: list[str] = []
        self.cancelled: list[str] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def submit_concurrency(self) -> int:
        return self.inner.submit_concurrency

    def check(self) -> None:
        self.inner.check()

    def find(self, job_name: str) -> str | None:
        return self.inner.find(job_name)

    def read_log(self, status: JobStatus) -> str | None:
        return self.inner.read_log(status)

    def flush(self) -> None:
        self.inner.flush()

    def explain(self, status: JobStatus, resources: Mapping[str, Any]) -> str | None:
        return self.inner.explain(status, resources)

    def submit(self, spec: JobSpec) -> str:
        job_id = self.inner.submit(spec)
        with self._lock:
            self.submitted.append(job_id)
            count = len(self.submitted)
        if count == self.at:
            worker = threading.Thread(target=self.cancel_run)
            worker.start()
            worker.join()
        return job_id

    def cancel(self, job_id: str, reason: str) -> None:
        with self._lock:
            self.cancelled.append(job_id)
        self.inner.cancel(job_id, reason)

    def describe(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return self.inner.describe(job_ids)


def race(engine: Engine, executor: CancelsMidSubmission) -> str:
    plan = engine.plan(DATE, BATCH, "wordcount", Resources(retries=0))
    run = engine.start_run(plan, "alice", submit=False)
    executor.cancel_run = lambda: engine.cancel(run.id, by="carol")
    engine.submit_pending(run.id)
    return run.id


def test_local_executor_runs_nothing_after_a_cancel_during_submission(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for i in range(150):
        store.write_bytes(f"Input/{DATE}/{BATCH}/A{i:03d}/x.txt", b"x\n")
    spool = tmp_path / "spool"
    local = LocalExecutor(spool, 2, command=(sys.executable, "-c", "import time; time.sleep(60)"))
    executor = CancelsMidSubmission(local, at=120)
    engine = Engine(store, executor, RunDB(str(tmp_path / "runs.sqlite")))
    run_id = race(engine, executor)
    engine.poll()
    assert engine.get_run(run_id).state == RunState.CANCELLED
    assert len(executor.submitted) >= 120
    names = spool_job_names(local.spool)
    assert len(names) == len(executor.submitted)
    assert {s.state for s in local.describe(names).values()} == {JobState.CANCELLED}  # none started or queued
    assert {job.state for job in engine.db.jobs(run_id)} == {JobState.CANCELLED}


def test_batch_holds_no_job_after_a_cancel_during_submission(aws: Any, shim: Any, batch_setup: BatchSetup,
                                                             tmp_path: Path) -> None:
    shim.hold.set()  # jobs wait in RUNNABLE, as on a busy queue
    put_text(batch_setup.bucket, {f"Input/{DATE}/{BATCH}/A{i:03d}/x.txt": "x\n" for i in range(150)})
    batch = BatchExecutor(batch_setup.queue, batch_setup.definition)
    executor = CancelsMidSubmission(batch, at=130)
    engine = Engine(S3Store.from_uri(f"s3://{batch_setup.bucket}"), executor, RunDB(str(tmp_path / "runs.sqlite")))
    run_id = race(engine, executor)
    engine.poll()
    engine.poll()
    jobs = []
    client = boto3.client("batch")
    for start in range(0, len(executor.submitted), 100):
        jobs += client.describe_jobs(jobs=executor.submitted[start:start + 100])["jobs"]
    assert len(jobs) == len(executor.submitted) >= 130
    live = [j["jobName"] for j in jobs if j["status"] not in ("FAILED", "SUCCEEDED")]
    assert live == [], f"{len(live)} Batch jobs orphaned after the cancel"
    assert all(j["statusReason"].startswith("cyto: ") for j in jobs)  # every one stopped by us
    assert engine.get_run(run_id).state == RunState.CANCELLED
    shim.hold.clear()
