"""What the engine hands out: a checked plan, a run's summary, its failures, a log excerpt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.excerpt import Excerpt
from bot.executors import Resources
from bot.layout import BatchRef
from bot.ledger import Run
from bot.states import JobState


@dataclass(frozen=True)
class Plan:
    ref: BatchRef
    analyses: list[str]
    pipeline: str
    resources: Resources
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    analysis: str
    attempts: int
    reason: str | None
    exit_code: int | None
    rule: str | None = None  # the failure policy's rule that applied (bot/failure_policy.py)


@dataclass(frozen=True)
class RunSummary:
    run: Run
    counts: dict[JobState, int]
    total: int
    wall_s: float
    durations: dict[str, float]  # per analysis, of its last attempt that ran
    failures: list[Failure]
    reasons: dict[str, int]  # failure reason -> number of analyses

    @property
    def finished(self) -> bool:
        return self.run.state.is_finished

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED))

    def count(self, state: JobState) -> int:
        return self.counts.get(state, 0)


@dataclass(frozen=True)
class LogExcerpt:
    analysis: str
    attempt: int
    excerpt: Excerpt | None
    source: str | None  # where the lines came from ("executor" log or the store's Logs/ copy)
    full_log: str  # where the whole log is
    explanation: str | None  # a plain-words reason when the executor itself stopped the job
