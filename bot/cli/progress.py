"""Terminal rendering of a run's progress: rich bars on a terminal, plain lines when piped. Pure
rendering of the run's summary and its ledger events; no run logic."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.api import RunEvent, RunSummary
from bot.states import EventKind, JobState, counts_text


def event_line(event: RunEvent) -> str | None:
    who = event.analysis or ""
    if event.kind == EventKind.JOB_CHANGED:
        return f"{who}: {str(event.state).lower()}"
    if event.kind == EventKind.JOB_RETRYING:
        return f"{who}: attempt {event.attempt} failed, retrying: {event.reason}"
    if event.kind == EventKind.JOB_FAILED:
        return f"{who}: failed after {event.attempt} attempt(s): {event.reason}"
    if event.kind == EventKind.JOB_RETRIED:
        return f"{who}: retry requested by {event.by}"
    if event.kind == EventKind.RUN_CANCELLING:
        return f"run {event.run_id}: cancelling (requested by {event.by})"
    if event.kind == EventKind.RUN_FINISHED:
        return f"run {event.run_id}: {str(event.state).lower()}"
    return None


class RunProgress:
    """Shows one run's progress; call `event()` for each of its events and `update()` with each summary."""

    def __init__(self, out: IO[str], total: int, label: str, rich: bool | None = None) -> None:
        self.console = Console(file=out, highlight=False, soft_wrap=True)
        self.rich = self.console.is_terminal if rich is None else rich
        self.out = out
        self._progress: Progress | None = None
        self._task = None
        if self.rich:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                                      console=self.console, transient=False)
            self._task = self._progress.add_task(label, total=total, counts="")
            self._progress.start()

    def event(self, event: RunEvent) -> None:
        line = event_line(event)
        if line is None:
            return
        if self._progress is not None:
            if event.kind in (EventKind.JOB_FAILED, EventKind.JOB_RETRYING, EventKind.RUN_CANCELLING):
                self._progress.console.print(line, markup=False)
        else:
            print(line, file=self.out, flush=True)

    def update(self, summary: RunSummary) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=summary.done, total=summary.total,
                                  counts=counts_text(summary.counts))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def summary_lines(summary: RunSummary) -> list[str]:
    run = summary.run
    lines = [
        f"run {run.id}  {run.label}  pipeline {run.pipeline}  {run.state.value.lower()}",
        f"  {summary.total} analyses: {counts_text(summary.counts)}",
        f"  wall time {summary.wall_s:.1f} s",
    ]
    if summary.durations:
        values = sorted(summary.durations.values())
        lines.append(f"  job time: median {values[len(values) // 2]:.1f} s, longest {values[-1]:.1f} s")
    for failure in summary.failures:
        attempts = f"{failure.attempts} attempt{'s' if failure.attempts != 1 else ''}"
        lines.append(f"  ✗ {failure.analysis} ({attempts}): {failure.reason or 'unknown reason'}")
        if failure.rule:
            lines.append(f"    {failure.rule}")
    cancelled = summary.count(JobState.CANCELLED)
    if cancelled:
        lines.append(f"  {cancelled} cancelled")
    return lines
