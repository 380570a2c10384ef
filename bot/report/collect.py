"""Gather a run's facts for its report from the ledger, through the engine (no SQL here)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.engine import Engine, EngineError
from bot.executors import Resources
from bot.ledger import Attempt, Job
from bot.report.model import AnalysisRow, AttemptRow, RunFacts
from bot.states import JobState
from bot.store import StoreError

# Log excerpts are read for the first failed analyses only: each is a read of a log, and a run where
# hundreds failed the same way needs a few examples, not hundreds.
MAX_EXCERPTS = 20
log = logging.getLogger("cyto.report")


def collect(engine: Engine, run_id: str, *, max_excerpts: int = MAX_EXCERPTS,
            clock: Callable[[], float] = time.time) -> RunFacts:
    run = engine.get_run(run_id)
    defaults = {**Resources().as_dict(), **run.resources}
    rows: list[AnalysisRow] = []
    excerpts_read = left_out = 0
    for job in engine.db.jobs(run_id):
        attempts = tuple(_attempt_row(a, defaults) for a in engine.db.attempts(job.id))
        excerpt = full_log = None
        if job.state == JobState.FAILED:
            if excerpts_read < max_excerpts:
                excerpts_read += 1
                excerpt, full_log = _excerpt(engine, run_id, job)
            else:
                left_out += 1
        rows.append(AnalysisRow(job.analysis, job.state, attempts, job.reason, job.exit_code, job.failure_rule,
                                excerpt, full_log))
    return RunFacts(run, tuple(rows), clock(), left_out)


def _attempt_row(attempt: Attempt, defaults: dict[str, object]) -> AttemptRow:
    resources = {**defaults, **(attempt.resources or {})}
    vcpus = resources.get("vcpus")
    memory = resources.get("memory_mib")
    return AttemptRow(attempt.attempt, attempt.state, attempt.reason, attempt.exit_code, attempt.submitted_at,
                      attempt.started_at, attempt.stopped_at, float(vcpus) if vcpus is not None else None,  # type: ignore[arg-type]
                      int(memory) if memory is not None else None, attempt.failure_rule)  # type: ignore[call-overload]


def _excerpt(engine: Engine, run_id: str, job: Job) -> tuple[str | None, str | None]:
    try:
        found = engine.log_excerpt(run_id, job.analysis)
    except (EngineError, StoreError) as exc:
        log.warning("report of run %s: no log excerpt for %s: %s", run_id, job.analysis, exc)
        return None, None
    text = found.excerpt.text if found.excerpt else None
    if found.explanation:
        text = f"{found.explanation}\n{text or ''}".rstrip()
    return text, found.full_log
