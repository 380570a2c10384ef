"""Following a run to its end and showing its summary (and, once finished, its report)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from bot.api import Cyto, RunSummary
from bot.cli.common import EXIT_FAILED, EXIT_OK, location
from bot.cli.progress import RunProgress, summary_lines
from bot.executors import ExecutorError
from bot.report import ReportResult
from bot.states import JobState
from bot.store import StoreError


def follow(cyto: Cyto, run_id: str, out: Any = None, interval: float = 0.5) -> RunSummary:
    """Follow the run to its end (`Cyto.follow`), showing its events and progress; return the final summary."""
    out = out or sys.stdout
    summary = cyto.status(run_id)
    progress = RunProgress(out, summary.total, f"{summary.run.label} ({run_id})")
    try:
        return cyto.follow(run_id, progress.event, interval=interval, on_summary=progress.update)
    except KeyboardInterrupt:
        progress.close()
        click.echo(f"\nstopped following run {run_id}; its jobs go on. `cyto status {run_id} --wait` follows it again.",
                   err=True)
        sys.exit(130)
    finally:
        progress.close()


def reconcile(cyto: Cyto) -> None:
    """Bring the ledger up to date (one poll) before showing it; a failure to reach the executor
    is a note, and the ledger is shown as it stands."""
    try:
        cyto.poll()
    except (ExecutorError, StoreError) as exc:
        click.echo(f"note: showing the run database as it stands; it could not be brought up to date: {exc}",
                   err=True)


def report(summary: RunSummary, cyto: Cyto | None = None) -> int:
    """Print the summary; for a finished run followed to its end, build its report and say where it is."""
    for line in summary_lines(summary):
        click.echo(line)
    if cyto is not None and summary.finished:
        print_report(build_report(cyto, summary.run.id))
    return exit_code(summary)

def finish(cyto: Cyto, summary: RunSummary, as_json: bool, followed: bool = False) -> int:
    """Show a run's summary, as text or as the `status --json` shape; return the exit code. A run
    followed to its end (--wait) also gets its report built, and the text says where it is."""
    if not as_json:
        return report(summary, cyto if followed else None)
    from bot.json_views import status_view

    click.echo(json.dumps(status_view(summary, cyto.jobs(summary.run.id)), indent=2))
    return exit_code(summary)


def exit_code(summary: RunSummary) -> int:
    return EXIT_OK if summary.count(JobState.FAILED) == 0 and summary.count(JobState.CANCELLED) == 0 \
        else EXIT_FAILED

def build_report(cyto: Cyto, run_id: str, out_dir: str | None = None) -> ReportResult | None:
    try:
        return cyto.report(run_id, out_dir)
    except (StoreError, OSError) as exc:
        click.echo(f"cyto: the report of run {run_id} could not be written: {exc}", err=True)
        return None


def print_report(result: ReportResult | None) -> None:
    if result is None:
        return
    if result.headline:
        click.echo(f"  QC: {result.headline}")
    click.echo(f"  report: {location(result.uri)}")
    if result.local_path is not None:
        click.echo(f"  copy: {result.local_path}")
