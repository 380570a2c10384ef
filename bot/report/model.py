"""What a run report shows, as plain data: the run, each analysis and its attempts, and the sections
a pipeline adds. Gathered from the ledger through the engine (bot/report/collect.py); rendered to
HTML without I/O (bot/report/html.py)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.ledger import Run
from bot.states import JobState


@dataclass(frozen=True)
class AttemptRow:
    number: int
    state: JobState
    reason: str | None
    exit_code: int | None
    submitted_at: float | None
    started_at: float | None
    stopped_at: float | None
    vcpus: float | None
    memory_mib: int | None
    failure_rule: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.stopped_at is None:
            return None
        return max(0.0, self.stopped_at - self.started_at)

    @property
    def queued_s(self) -> float | None:
        if self.submitted_at is None or self.started_at is None:
            return None
        return max(0.0, self.started_at - self.submitted_at)


@dataclass(frozen=True)
class AnalysisRow:
    name: str
    state: JobState
    attempts: tuple[AttemptRow, ...]
    reason: str | None = None
    exit_code: int | None = None
    failure_rule: str | None = None
    excerpt: str | None = None  # the lines worth reading from the last attempt's log (failed ones)
    full_log: str | None = None  # where the whole log is

    @property
    def last_ran(self) -> AttemptRow | None:
        """The newest attempt that has a duration."""
        return next((a for a in reversed(self.attempts) if a.duration_s is not None), None)

    @property
    def duration_s(self) -> float | None:
        last = self.last_ran
        return last.duration_s if last else None

    @property
    def current(self) -> AttemptRow | None:
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True)
class RunFacts:
    run: Run
    analyses: tuple[AnalysisRow, ...]
    generated_at: float
    excerpts_left_out: int = 0  # failed analyses whose excerpt was not read (only the first few are)

    @property
    def counts(self) -> dict[JobState, int]:
        counts: dict[JobState, int] = {}
        for row in self.analyses:
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    @property
    def failed(self) -> list[AnalysisRow]:
        return [a for a in self.analyses if a.state == JobState.FAILED]


@dataclass(frozen=True)
class DurationSummary:
    count: int
    total_s: float
    min_s: float
    median_s: float
    p90_s: float
    max_s: float
    cpu_hours: float  # requested vCPU x duration, over every attempt that ran
    longest: tuple[str, ...]  # the analyses that took longest, longest first


def duration_summary(analyses: Sequence[AnalysisRow], longest: int = 5) -> DurationSummary | None:
    ran = [(a.name, a.duration_s) for a in analyses if a.duration_s is not None]
    if not ran:
        return None
    values = sorted(d for _, d in ran if d is not None)
    cpu = sum((att.duration_s or 0.0) * (att.vcpus or 1.0) for a in analyses for att in a.attempts) / 3600
    slowest = sorted(ran, key=lambda nd: -(nd[1] or 0.0))[:longest]
    return DurationSummary(len(values), sum(values), values[0], statistics.median(values),
                           values[min(len(values) - 1, int(0.9 * len(values)))], values[-1], cpu,
                           tuple(n for n, _ in slowest))


@dataclass(frozen=True)
class Section:
    """A part of the report a pipeline adds: an HTML fragment (escaped by its builder) under a title."""

    id: str
    title: str
    html: str


@dataclass(frozen=True)
class PipelineResults:
    """What a pipeline contributes to its run's report and to the front ends.

    `artifacts` are files written beside the report (name -> bytes), e.g. merged tables;
    `headline` is one line for the CLI summary and the Slack done alert (e.g. the QC verdicts);
    `overview` names the artifact that pictures the batch (uploaded to Slack, shown in notebooks);
    `tables` are rows for notebooks (name -> list of dicts)."""

    sections: tuple[Section, ...] = ()
    artifacts: Mapping[str, bytes] = field(default_factory=dict)
    headline: str | None = None
    overview: str | None = None
    tables: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    plots: Mapping[str, list[str]] = field(default_factory=dict)  # analysis -> plot keys in the store
