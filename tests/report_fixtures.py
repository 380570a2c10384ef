"""A finished cytometry run for report tests, without processes: the demo plate's jobs are run
in-process with the pipeline itself, and a scripted executor reports what they did."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

from bot.demo import CYTOMETRY_FAILING, write_cytometry_batch
from bot.engine import Engine
from bot.executors import JobStatus
from bot.layout import BatchRef
from bot.ledger import RunDB
from bot.states import JobState
from bot.store.local import LocalStore
from container.pipelines import InputError, PipelineContext, cytometry
from tests.scripted_executor import ScriptedExecutor

DATE = "2026-11-30"


@dataclass
class FinishedRun:
    engine: Engine
    run_id: str
    ref: BatchRef
    store: LocalStore


class Clock:
    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def finished_cytometry_run(tmp_path: Path) -> FinishedRun:
    store = LocalStore(tmp_path / "store")
    ref, analyses = write_cytometry_batch(store, DATE)
    executor = ScriptedExecutor()
    clock = Clock()
    engine = Engine(store, executor, RunDB(str(tmp_path / "runs.sqlite")), clock=clock)
    run = engine.start_run(engine.plan(DATE, ref.batch, "cytometry", None, {}), "ada")
    for k, analysis in enumerate(analyses):
        out = tmp_path / "store" / ref.analysis(analysis).output_prefix
        log = io.StringIO()
        handler = logging.StreamHandler(log)
        logger = logging.getLogger(f"job.{analysis}")
        logger.addHandler(handler)
        ctx = PipelineContext(input_dir=tmp_path / "store" / ref.analysis(analysis).input_prefix, output_dir=out,
                              params={}, log=logger, analysis=analysis)
        job_id = executor.latest(analysis)
        start = clock.now + 2 + 3 * k
        try:
            cytometry.run(ctx)
        except InputError as exc:
            executor.states[job_id] = JobStatus(job_id, JobState.FAILED, reason=f"{exc} (exit code 2)", exit_code=2,
                                                started_at=start, stopped_at=start + 1.5)
            executor.logs[job_id] = log.getvalue() + f"ERROR: {exc}\n"
        else:
            executor.states[job_id] = JobStatus(job_id, JobState.SUCCEEDED, exit_code=0, started_at=start,
                                                stopped_at=start + 4 + k)
        logger.removeHandler(handler)
    clock.now += 30
    engine.poll()
    assert engine.get_run(run.id).state.is_finished
    assert engine.db.job(run.id, CYTOMETRY_FAILING).state == JobState.FAILED
    return FinishedRun(engine, run.id, ref, store)
