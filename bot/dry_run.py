"""What a run would do, without doing it: `cyto run --dry-run`.

The plan is the engine's own (the same checks as a real run: batch, pipeline, resources and every
parameter check), shown with each analysis's parameters after its params.json is merged over the
run's, and an estimate of the job-hours: the median duration of this pipeline's recent successful
jobs in the run database times the number of analyses, and the bound the timeout sets.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.engine import Plan, RunSummary
from bot.parameters import read_params_files
from bot.store import Store
from container.pipelines import PARAMS_FILE, parse_params_file

HISTORY_RUNS = 50


@dataclass(frozen=True)
class Estimate:
    jobs: int
    median_job_s: float | None  # None when the run database has no finished job of this pipeline
    history_jobs: int
    job_hours: float | None
    vcpu_hours: float | None
    max_job_hours: float  # every job running until its timeout


@dataclass(frozen=True)
class PlannedAnalysis:
    name: str
    params: dict[str, Any]
    has_params_file: bool


@dataclass(frozen=True)
class DryRun:
    plan: Plan
    analyses: list[PlannedAnalysis]
    estimate: Estimate


def analyses_with_params(store: Store, plan: Plan) -> list[PlannedAnalysis]:
    files = read_params_files(store, plan.ref, plan.analyses)
    planned = []
    for name in plan.analyses:
        own = parse_params_file(files[name], f"{name}/{PARAMS_FILE}") if name in files else {}
        planned.append(PlannedAnalysis(name, {**plan.params, **own}, name in files))
    return planned


def estimate(plan: Plan, history: Iterable[RunSummary]) -> Estimate:
    durations = [seconds for summary in history if summary.run.pipeline == plan.pipeline
                 for analysis, seconds in summary.durations.items()
                 if analysis not in {f.analysis for f in summary.failures}]
    jobs = len(plan.analyses)
    median = statistics.median(durations) if durations else None
    hours = jobs * median / 3600 if median is not None else None
    return Estimate(jobs, median, len(durations), hours,
                    hours * plan.resources.vcpus if hours is not None else None,
                    jobs * plan.resources.timeout_s / 3600)


def plan_view(plan: Plan, analyses: list[PlannedAnalysis], guess: Estimate) -> dict[str, Any]:
    """The `--dry-run --json` shape (stable: keys are only added)."""
    return {
        "version": 1,
        "submitted": False,
        "date": plan.ref.date,
        "batch": plan.ref.batch,
        "pipeline": plan.pipeline,
        "resources": plan.resources.as_dict(),
        "params": dict(plan.params),
        "analyses": [{"analysis": a.name, "params": a.params, "params_file": a.has_params_file} for a in analyses],
        "estimate": {"jobs": guess.jobs, "median_job_s": guess.median_job_s, "history_jobs": guess.history_jobs,
                     "job_hours": guess.job_hours, "vcpu_hours": guess.vcpu_hours,
                     "max_job_hours": guess.max_job_hours},
    }
