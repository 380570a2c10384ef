"""The `--json` shapes of the reading commands: pure functions, state in, plain data out.

The shapes are a stable interface for scripts (documented in README.md, "Scripting"): keys are only
ever added, never renamed or removed; times are ISO 8601 UTC strings; states are lower case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.engine import LogExcerpt, RunSummary
from bot.ledger import Job, Run
from bot.states import JobState

SCHEMA_VERSION = 1


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_view(summary: RunSummary) -> dict[str, Any]:
    run: Run = summary.run
    return {
        "id": run.id,
        "date": run.date,
        "batch": run.batch,
        "pipeline": run.pipeline,
        "state": run.state.value.lower(),
        "finished": summary.finished,
        "requested_by": run.requested_by,
        "created_at": iso(run.created_at),
        "finished_at": iso(run.finished_at),
        "store": run.store,
        "executor": run.executor,
        "params": dict(run.params),
        "resources": dict(run.resources),
        "total": summary.total,
        "counts": {state.value.lower(): summary.count(state) for state in JobState},
    }


def runs_view(summaries: Iterable[RunSummary]) -> dict[str, Any]:
    return {"version": SCHEMA_VERSION, "runs": [run_view(s) for s in summaries]}


def status_view(summary: RunSummary, jobs: Sequence[Job]) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "run": run_view(summary),
        "jobs": [{
            "analysis": job.analysis,
            "state": job.state.value.lower(),
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "reason": job.reason,
            "exit_code": job.exit_code,
            "duration_s": summary.durations.get(job.analysis),
        } for job in jobs],
    }


def logs_view(run_id: str, found: LogExcerpt) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "run_id": run_id,
        "analysis": found.analysis,
        "attempt": found.attempt,
        "full_log": found.full_log,
        "explanation": found.explanation,
        "excerpt": found.excerpt.text if found.excerpt else None,
    }


def dates_view(batches_by_date: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return {"version": SCHEMA_VERSION,
            "dates": [{"date": d, "batches": list(names)} for d, names in batches_by_date.items()]}


def batches_view(date: str, analyses_by_batch: Mapping[str, int]) -> dict[str, Any]:
    return {"version": SCHEMA_VERSION, "date": date,
            "batches": [{"batch": name, "analyses": count} for name, count in analyses_by_batch.items()]}
