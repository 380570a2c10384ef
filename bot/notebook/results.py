"""HTML of a finished run's results for the notebook watcher: the QC verdicts, the batch overview,
the QC table, the merged statistics and each analysis's plots. Pure: report and images in, HTML out."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from bot.report import ReportResult

MAX_ROWS = 200
MAX_PLOTS = 24
STAT_COLUMNS = 6  # of the merged statistics, besides the fixed ones: the first channels' medians
VERDICT_COLOURS = {"pass": "#15803d", "warn": "#b45309", "fail": "#b91c1c"}


def _img(data: bytes, alt: str, width: str = "100%") -> str:
    return (f'<img alt="{escape(alt)}" style="max-width:{width}" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode()}">')


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], css: str) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows[:MAX_ROWS]:
        cells = []
        for c in columns:
            value = str(row.get(c, ""))
            colour = VERDICT_COLOURS.get(value) if c == "verdict" else None
            cells.append(f'<td style="color:{colour};font-weight:600">{escape(value)}</td>' if colour
                         else f"<td>{escape(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    if len(rows) > MAX_ROWS:
        body.append(f'<tr><td colspan="{len(columns)}">… and {len(rows) - MAX_ROWS} more rows in the CSV</td></tr>')
    return f'<table class="{css}"><tr>{head}</tr>{"".join(body)}</table>'


def results_html(report: ReportResult, plots: Mapping[str, Sequence[tuple[str, bytes]]] | None = None,
                 report_location: str | None = None) -> str:
    parts = ["<h4>Results</h4>"]
    if report.headline:
        parts.append(f"<p><b>QC:</b> {escape(report.headline)}</p>")
    overview = report.overview_png
    if overview:
        parts.append(_img(overview, "batch overview: QC verdict, events, % cells and % singlets per file", "60em"))
    tables = report.results.tables
    qc = tables.get("qc") or []
    if qc:
        parts.append("<h5>QC per file</h5>" + _table(qc, ["analysis", "file", "well", "verdict", "reasons",
                                                         "events", "cells_pct", "singlets_pct"], "cyto-qc"))
    stats = tables.get("stats") or []
    if stats:
        fixed = ["analysis", "file", "population", "parent", "events", "pct_of_parent"]
        medians = [c for c in stats[0] if c.endswith("_median")][:STAT_COLUMNS]
        parts.append("<h5>Statistics (merged)</h5>" + _table(stats, fixed + medians, "cyto-stats"))
    for analysis, images in (plots or {}).items():
        shown = "".join(_img(data, name, "24em") for name, data in images)
        parts.append(f"<h5>{escape(analysis)}</h5><div>{shown}</div>")
    if report_location:
        parts.append(f"<p>Report: <code>{escape(report_location)}</code>; beside it "
                     f"{', '.join(f'<code>{escape(n)}</code>' for n in sorted(report.files) if n != 'report.html')}"
                     "</p>")
    return "".join(parts)
