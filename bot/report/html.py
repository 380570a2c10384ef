"""The run report as one self-contained HTML page. Pure: facts and sections in, text out.

No script, no external style sheet, font or image: the page makes no request of its own (a
Content-Security-Policy says so to the browser), so it opens the same on a laptop without network.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from html import escape

from bot.report.model import AnalysisRow, RunFacts, Section, duration_summary
from bot.states import DISPLAY_ORDER, JobState

TIMELINE_ROWS = 300  # more rows than this make the timeline unreadable; the table still lists all
STATE_COLOURS = {
    JobState.PENDING: "#9e9e9e", JobState.QUEUED: "#b0bec5", JobState.RUNNING: "#42a5f5",
    JobState.SUCCEEDED: "#43a047", JobState.FAILED: "#e53935", JobState.CANCELLED: "#8d6e63",
}
CSP = "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212121;background:#fafafa}
header{background:#263238;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cfd8dc}main{padding:8px 28px 40px;max-width:1400px}
nav a{margin-right:14px;color:#1565c0}section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;
padding:12px 18px;margin:16px 0}h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #eee;padding:3px 10px 3px 0;
text-align:left;vertical-align:top}th{color:#546e7a;font-weight:600}td.num,th.num{text-align:right}
.chip{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px}
.pass{background:#43a047}.warn{background:#fb8c00}.fail{background:#e53935}.none{background:#9e9e9e}
pre{background:#263238;color:#eceff1;padding:8px 10px;border-radius:4px;overflow:auto;font-size:12px;
max-height:320px}.muted{color:#78909c}.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #e0e0e0;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}figure{margin:6px 0}figure img{max-width:100%;border:1px solid #eee}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{width:320px}.thumbs img{width:320px}
figcaption{font-size:12px;color:#546e7a;word-break:break-all}
.scroll{max-height:520px;overflow:auto}
"""


def render_report(facts: RunFacts, sections: Sequence[Section] = ()) -> str:
    run = facts.run
    title = f"cyto run {run.id} — {run.label}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{escape(title)}</h1><p>pipeline {escape(run.pipeline)} · "
        f"{escape(run.state.value.lower())} · started by {escape(run.requested_by)} on {_when(run.created_at)}"
        f" · report made {_when(facts.generated_at)}</p></header><main>",
        _nav(sections),
        _overview(facts),
        *(f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>{s.html}</section>' for s in sections),
        _analyses(facts.analyses),
        _failures(facts),
        _timeline(facts),
        _durations(facts.analyses),
        _parameters(facts),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def _nav(sections: Sequence[Section]) -> str:
    links = [("run", "Run"), *((s.id, s.title) for s in sections), ("analyses", "Analyses"),
             ("failures", "Failures"), ("timeline", "Timeline"), ("durations", "Durations"),
             ("parameters", "Parameters")]
    return "<nav>" + "".join(f'<a href="#{escape(i)}">{escape(t)}</a>' for i, t in links) + "</nav>"


def state_chip(state: JobState) -> str:
    return (f'<span class="chip" style="background:{STATE_COLOURS[state]}">'
            f"{escape(state.value.lower())}</span>")


def _overview(facts: RunFacts) -> str:
    run = facts.run
    counts = facts.counts
    cards = [f'<div class="card"><b>{len(facts.analyses)}</b>analyses</div>']
    cards += [f'<div class="card"><b>{counts[s]}</b>{state_chip(s)}</div>' for s in DISPLAY_ORDER if counts.get(s)]
    wall = (run.finished_at or facts.generated_at) - run.created_at
    cards.append(f'<div class="card"><b>{escape(seconds(wall))}</b>wall time</div>')
    return (f'<section id="run"><h2>Run</h2><div class="cards">{"".join(cards)}</div>'
            f"<p>Run <code>{escape(run.id)}</code> of <code>{escape(run.label)}</code> on the "
            f"{escape(run.executor)} executor, store <code>{escape(run.store)}</code>; finished "
            f"{_when(run.finished_at)}"
            f"{f', cancelled by {escape(run.cancel_requested_by)}' if run.cancel_requested_by else ''}.</p>"
            "</section>")


def _analyses(analyses: Sequence[AnalysisRow]) -> str:
    rows = []
    for a in analyses:
        current = a.current
        rows.append(
            f'<tr id="a-{escape(a.name)}"><td>{escape(a.name)}</td><td>{state_chip(a.state)}</td>'
            f'<td class="num">{len(a.attempts)}</td><td class="num">{escape(seconds(a.duration_s))}</td>'
            f'<td class="num">{_num(current.vcpus if current else None)}</td>'
            f'<td class="num">{_num(current.memory_mib if current else None)}</td>'
            f"<td>{escape(a.reason or '') if a.state != JobState.SUCCEEDED else ''}</td></tr>")
    return ('<section id="analyses"><h2>Analyses</h2><div class="scroll"><table><thead><tr><th>analysis</th>'
            '<th>state</th><th class="num">attempts</th><th class="num">duration</th><th class="num">vCPU</th>'
            '<th class="num">memory MiB</th><th>reason</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div></section>")


def _num(value: float | int | None) -> str:
    return "—" if value is None else f"{value:g}"


def _failures(facts: RunFacts) -> str:
    failed = facts.failed
    if not failed:
        return '<section id="failures"><h2>Failures</h2><p class="muted">No analysis failed.</p></section>'
    items = []
    for a in failed:
        tries = "; ".join(f"attempt {t.number}: {t.reason or t.state.value.lower()}" for t in a.attempts)
        rule = f"<p class=\"muted\">{escape(a.failure_rule)}</p>" if a.failure_rule else ""
        log = f"<p class=\"muted\">full log: <code>{escape(a.full_log)}</code></p>" if a.full_log else ""
        excerpt = f"<pre>{escape(a.excerpt)}</pre>" if a.excerpt else ""
        reason = a.reason or "unknown reason"
        if a.exit_code is not None and f"exit code {a.exit_code}" not in reason:
            reason += f" (exit code {a.exit_code})"
        items.append(f"<h3>{escape(a.name)}: {escape(reason)}</h3>"
                     f'<p class="muted">{escape(tries)}</p>{rule}{excerpt}{log}')
    more = (f'<p class="muted">{facts.excerpts_left_out} more failed analyses are listed without their log '
            "excerpt (`cyto logs RUN ANALYSIS` shows it).</p>") if facts.excerpts_left_out else ""
    return f'<section id="failures"><h2>Failures ({len(failed)})</h2>{"".join(items)}{more}</section>'


def _timeline(facts: RunFacts) -> str:
    """One row per analysis, one bar per attempt: queued (pale) then running (coloured by outcome)."""
    spans = [(a, t) for a in facts.analyses for t in a.attempts if t.submitted_at or t.started_at]
    if not spans:
        return '<section id="timeline"><h2>Timeline</h2><p class="muted">No job has started.</p></section>'
    start = facts.run.created_at
    end = max([facts.run.finished_at or 0.0, *((t.stopped_at or t.started_at or t.submitted_at or 0.0)
                                                for _, t in spans)])
    width = max(end - start, 1e-3)
    order = sorted({a.name: a for a, _ in spans}.values(),
                   key=lambda a: min((t.submitted_at or t.started_at or 0.0) for t in a.attempts))
    shown = order[:TIMELINE_ROWS]
    row_h, label_w, plot_w = 14, 180, 900
    height = row_h * len(shown) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 10}" height="{height}" '
           f'font-size="11" role="img" aria-label="timeline of the jobs">']
    for i, a in enumerate(shown):
        y = i * row_h + 4
        out.append(f'<text x="{label_w - 6}" y="{y + 10}" text-anchor="end">{escape(_short(a.name, 28))}</text>')
        for t in a.attempts:
            begin = t.submitted_at or t.started_at
            if begin is None:
                continue
            x0 = label_w + plot_w * (begin - start) / width
            if t.started_at is not None:
                xs = label_w + plot_w * (t.started_at - start) / width
                out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(xs - x0, 0):.1f}" height="{row_h - 4}" '
                           'fill="#cfd8dc"/>')
                stop = t.stopped_at if t.stopped_at is not None else end
                xe = label_w + plot_w * (stop - start) / width
                tip = f"{a.name} attempt {t.number}: {t.state.value.lower()}, {seconds(t.duration_s)}"
                out.append(f'<rect x="{xs:.1f}" y="{y}" width="{max(xe - xs, 1.0):.1f}" height="{row_h - 4}" '
                           f'fill="{STATE_COLOURS[t.state]}"><title>{escape(tip)}</title></rect>')
    axis_y = len(shown) * row_h + 18
    for k in range(6):
        x = label_w + plot_w * k / 5
        out.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle" fill="#546e7a">'
                   f"{escape(seconds(width * k / 5))}</text>")
    out.append("</svg>")
    more = (f'<p class="muted">The first {TIMELINE_ROWS} of {len(order)} analyses are drawn.</p>'
            if len(order) > TIMELINE_ROWS else "")
    legend = " ".join(f'{state_chip(s)}' for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED))
    return (f'<section id="timeline"><h2>Timeline</h2><p class="muted">Each row an analysis; pale: waiting '
            f"to start, then the attempt running, coloured by its outcome: {legend}</p>"
            f'<div class="scroll">{"".join(out)}</div>{more}</section>')


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _durations(analyses: Sequence[AnalysisRow]) -> str:
    summary = duration_summary(analyses)
    if summary is None:
        return '<section id="durations"><h2>Durations</h2><p class="muted">No attempt has finished.</p></section>'
    rows = [("analyses with a duration", str(summary.count)), ("shortest", seconds(summary.min_s)),
            ("median", seconds(summary.median_s)), ("90th percentile", seconds(summary.p90_s)),
            ("longest", seconds(summary.max_s)), ("sum of job time", seconds(summary.total_s)),
            ("CPU hours requested × used", f"{summary.cpu_hours:.3f}"),
            ("slowest analyses", ", ".join(summary.longest))]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<section id="durations"><h2>Durations</h2><table>{body}</table></section>'


def _parameters(facts: RunFacts) -> str:
    run = facts.run
    params = json.dumps(run.params, indent=2, sort_keys=True) if run.params else "{} (the pipeline's defaults)"
    resources = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
                        for k, v in sorted(run.resources.items()))
    return (f'<section id="parameters"><h2>Parameters</h2><p>Started by <b>{escape(run.requested_by)}</b> on '
            f"{_when(run.created_at)}. Each analysis's <code>params.json</code>, when it has one, overrides "
            f"these.</p><h3>Pipeline parameters</h3><pre>{escape(params)}</pre><h3>Resources per job</h3>"
            f"<table>{resources}</table></section>")
