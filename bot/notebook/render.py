"""HTML for the notebook widgets. Pure rendering: the session's records in, HTML text out; no widgets, no I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape

from bot.api import Job, LogExcerpt, Plan, Run, RunSummary
from bot.states import DISPLAY_ORDER, JobState, RunState, counts_text

MAX_PREVIEW_NAMES = 30
MAX_TABLE_ROWS = 200
STATE_COLOURS = {
    JobState.PENDING: "#6b7280", JobState.QUEUED: "#6b7280", JobState.RUNNING: "#2563eb",
    JobState.SUCCEEDED: "#15803d", JobState.FAILED: "#b91c1c", JobState.CANCELLED: "#a16207",
}
# ipywidgets' bar styles for a run's state.
BAR_STYLES = {RunState.HELD: "", RunState.ACTIVE: "info", RunState.CANCELLING: "warning", RunState.SUCCEEDED: "success",
              RunState.FAILED: "danger", RunState.CANCELLED: "warning"}


def message_html(text: str | None, kind: str = "error") -> str:
    """A short message shown next to an input (error) or under a button (info)."""
    if not text:
        return ""
    colour = {"error": "#b91c1c", "info": "#374151", "ok": "#15803d"}.get(kind, "#374151")
    return f'<span style="color:{colour}">{escape(text)}</span>'


def preview_html(plan: Plan) -> str:
    r = plan.resources
    names = plan.analyses[:MAX_PREVIEW_NAMES]
    more = len(plan.analyses) - len(names)
    items = "".join(f"<li><code>{escape(n)}</code></li>" for n in names)
    if more:
        items += f"<li>… and {more} more</li>"
    noun = "analysis" if len(plan.analyses) == 1 else "analyses"
    return (f"<b>{len(plan.analyses)} {noun}</b> of <code>{escape(plan.ref.label)}</code> will run "
            f"<code>{escape(plan.pipeline)}</code> ({r.vcpus:g} vCPU, {r.memory_mib} MiB, {r.storage_gib} GiB, "
            f"timeout {r.timeout_s} s, {r.retries} automatic retries):<ul>{items}</ul>")


def run_label(run: Run) -> str:
    started = dt.datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M")
    return f"{run.id}  {run.label}  {run.pipeline}  {run.state.value.lower()}  ({started}, {run.requested_by})"


def progress_html(summary: RunSummary) -> str:
    run = summary.run
    return (f"<b>{summary.done}/{summary.total}</b> done · {escape(counts_text(summary.counts))} · "
            f"run <code>{escape(run.id)}</code> {escape(run.state.value.lower())} · {summary.wall_s:.0f} s")


def jobs_table_html(jobs: Sequence[Job], durations: Mapping[str, float]) -> str:
    """One row per analysis, grouped by state in display order."""
    if not jobs:
        return "<i>no analyses</i>"
    order = {state: i for i, state in enumerate(DISPLAY_ORDER)}
    ordered = sorted(jobs, key=lambda j: (order[j.state], j.analysis))
    rows = []
    for job in ordered[:MAX_TABLE_ROWS]:
        seconds = durations.get(job.analysis)
        rows.append(
            f'<tr><td><code>{escape(job.analysis)}</code></td>'
            f'<td style="color:{STATE_COLOURS[job.state]}"><b>{job.state.value.lower()}</b></td>'
            f"<td>{job.attempt}/{job.max_attempts}</td>"
            f"<td>{'' if seconds is None else f'{seconds:.1f} s'}</td>"
            f"<td>{escape(job.reason or '')}"
            + (f"<br><small>{escape(job.failure_rule)}</small>" if job.failure_rule else "")
            + "</td></tr>")
    more = len(ordered) - MAX_TABLE_ROWS
    if more > 0:
        rows.append(f'<tr><td colspan="5">… and {more} more analyses</td></tr>')
    head = "<tr><th>analysis</th><th>state</th><th>attempt</th><th>time</th><th>reason</th></tr>"
    return f'<table class="cyto-jobs">{head}{"".join(rows)}</table>'


def log_html(log: LogExcerpt) -> str:
    title = f"<b>{escape(log.analysis)}</b>, attempt {log.attempt}"
    if log.source:
        title += f" (from the {escape(log.source)} log)"
    parts = [title]
    if log.explanation:
        parts.append(message_html(log.explanation))
    if log.excerpt is None or log.excerpt.empty:
        parts.append("<i>no log yet: the attempt has not started or wrote nothing</i>")
    else:
        parts.append(f'<pre style="white-space:pre-wrap">{escape(log.excerpt.text)}</pre>')
    parts.append(f"whole log: <code>{escape(log.full_log)}</code>")
    return "<br>".join(parts)
