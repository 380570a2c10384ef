"""The cytometry pipeline's part of a run report: the batch's merged statistics and QC tables (CSV),
the QC verdict per file, the batch overview figure and each file's plot.

Reads only the small per-analysis outputs (qc.json, stats.csv and, for the first files, their PNGs).
Each file's verdict is the job's (container/cytometry/verdict.py); an older qc.json without one is
judged by the same function.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from typing import Any

from bot.report.model import PipelineResults, RunFacts, Section
from bot.report.overview import Tile, count_text, overview_png
from bot.report.pipelines import Outputs
from bot.report.wells import well_of
from bot.states import JobState
from container.cytometry import verdict as verdicts

STATS_MERGED = "stats_merged.csv"
QC_TABLE = "qc_table.csv"
OVERVIEW = "overview.png"
MAX_EMBEDDED_PLOTS = 64  # plots drawn inside the page; more are listed with where they are
HEADLINE_EXAMPLES = 3
READERS = 16  # parallel reads of the analyses' outputs
QC_COLUMNS = ["run", "analysis", "file", "well", "verdict", "reasons", "events", "cells_pct", "singlets_pct"]


@dataclass(frozen=True)
class FileQC:
    analysis: str
    file: str
    well: str | None
    verdict: str
    reasons: tuple[str, ...]
    events: int | None
    cells_pct: float | None
    singlets_pct: float | None
    plot: str | None  # the PNG's name in the analysis's output folder

    @property
    def label(self) -> str:
        return self.well or f"{self.analysis}/{self.file}"


def results(facts: RunFacts, outputs: Outputs) -> PipelineResults:
    files: list[FileQC] = []
    stats_rows: list[dict[str, str]] = []
    stats_columns: list[str] = []
    missing: list[tuple[str, str]] = []  # analyses without a qc.json, and why
    # Each analysis's two small files, read in parallel: on S3 each read is a round trip.
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        read = list(pool.map(lambda a: (outputs.read(a.name, "qc.json"), outputs.read(a.name, "stats.csv")),
                             facts.analyses))
    for analysis, (qc_raw, stats_raw) in zip(facts.analyses, read, strict=True):
        if qc_raw is None:
            why = analysis.reason or analysis.state.value.lower()
            missing.append((analysis.name, why if analysis.state != JobState.SUCCEEDED else "no qc.json"))
            continue
        pcts = _stats(stats_raw, analysis.name, facts.run.id, stats_rows, stats_columns)
        files.extend(file_rows(analysis.name, json.loads(qc_raw).get("files", {}), pcts))
    title = f"{facts.run.label} · run {facts.run.id}"
    tiles = [Tile(f.analysis, f.file, f.well, f.verdict, f.events, f.cells_pct, f.singlets_pct) for f in files]
    overview = overview_png(tiles, title) if tiles else None
    plots = _plots(files, outputs)
    artifacts: dict[str, bytes] = {
        STATS_MERGED: _csv(["run", "analysis", *stats_columns], stats_rows),
        QC_TABLE: _csv(QC_COLUMNS, qc_rows(facts.run.id, files, missing)),
    }
    if overview:
        artifacts[OVERVIEW] = overview
    section = Section("cytometry", "Cytometry results",
                      section_html(files, missing, overview, plots, len(stats_rows)))
    return PipelineResults(
        sections=(section,), artifacts=artifacts, headline=headline(files, missing),
        overview=OVERVIEW if overview else None,
        tables={"qc": qc_rows(facts.run.id, files, missing), "stats": stats_rows},
        plots={a: [outputs.key(a, f.plot) for f in files if f.analysis == a and f.plot]
               for a in dict.fromkeys(f.analysis for f in files)})


def file_rows(analysis: str, qc: Mapping[str, Mapping[str, Any]],
              pcts: Mapping[tuple[str, str], float]) -> list[FileQC]:
    rows = []
    for name, entry in qc.items():
        judged = entry if "verdict" in entry else {**entry, **verdicts.judge(entry)}
        populations = entry.get("populations") or {}

        def pct(population: str, pops: Mapping[str, Any] = populations, file: str = name) -> float | None:
            found = (pops.get(population) or {}).get("pct_of_parent")
            return float(found) if found is not None else pcts.get((file, population))

        rows.append(FileQC(analysis, name, well_of(name, entry.get("well")), str(judged["verdict"]),
                           tuple(judged.get("reasons") or ()), entry.get("events"), pct("cells"), pct("singlets"),
                           entry.get("plot")))
    return rows


def _stats(raw: bytes | None, analysis: str, run_id: str, into: list[dict[str, str]],
           columns: list[str]) -> dict[tuple[str, str], float]:
    """Append the analysis's stats rows (with run and analysis) and return % of parent by (file, population)."""
    pcts: dict[tuple[str, str], float] = {}
    if raw is None:
        return pcts
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace")))
    for column in reader.fieldnames or []:
        if column not in columns:
            columns.append(column)
    for row in reader:
        into.append({"run": run_id, "analysis": analysis, **row})
        try:
            pcts[(row.get("file", ""), row.get("population", ""))] = float(row.get("pct_of_parent") or "nan")
        except ValueError:
            continue
    return pcts


def qc_rows(run_id: str, files: Sequence[FileQC], missing: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"run": run_id, "analysis": f.analysis, "file": f.file, "well": f.well or "", "verdict": f.verdict,
         "reasons": "; ".join(f.reasons), "events": "" if f.events is None else f.events,
         "cells_pct": _fmt(f.cells_pct), "singlets_pct": _fmt(f.singlets_pct)} for f in files]
    rows += [{"run": run_id, "analysis": a, "file": "", "well": "", "verdict": verdicts.FAIL,
              "reasons": f"analysis failed: {why}", "events": "", "cells_pct": "", "singlets_pct": ""}
             for a, why in missing]
    return rows


def _fmt(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.2f}"


def _csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def headline(files: Sequence[FileQC], missing: Sequence[tuple[str, str]] = ()) -> str | None:
    """'28 pass · 3 warn · 1 fail: A05 too few events (812); A07 time gap (30% of the acquisition) …'"""
    if not files and not missing:
        return None
    counts = Counter(f.verdict for f in files)
    text = " · ".join(f"{counts.get(v, 0)} {v}" for v in verdicts.ORDER)
    worst = sorted((f for f in files if f.verdict != verdicts.PASS), key=lambda f: -verdicts.ORDER.index(f.verdict))
    examples = [f"{f.label} {_brief(f.reasons[0]) if f.reasons else f.verdict}" for f in worst[:HEADLINE_EXAMPLES]]
    if examples:
        text += ": " + "; ".join(examples) + (" …" if len(worst) > HEADLINE_EXAMPLES else "")
    if missing:
        text += f" · {len(missing)} analys{'es' if len(missing) != 1 else 'is'} without results"
    return text


def _brief(reason: str, limit: int = 60) -> str:
    if reason.startswith("unreadable:"):
        return "unreadable"
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def verdict_counts(files: Sequence[FileQC]) -> dict[str, int]:
    counts = Counter(f.verdict for f in files)
    return {v: counts.get(v, 0) for v in verdicts.ORDER}


def _plots(files: Sequence[FileQC], outputs: Outputs) -> list[tuple[FileQC, str]]:
    """(file, src) for each file's plot: a data URI for the first ones, the store's URI for the rest."""
    out = []
    for k, f in enumerate(f for f in files if f.plot):
        if k < MAX_EMBEDDED_PLOTS:
            data = outputs.read(f.analysis, f.plot or "")
            if data is None:
                continue
            out.append((f, "data:image/png;base64," + base64.b64encode(data).decode()))
        else:
            out.append((f, outputs.store.uri_for(outputs.key(f.analysis, f.plot or ""))))
    return out


def _chip(verdict: str) -> str:
    return f'<span class="chip {escape(verdict)}">{escape(verdict)}</span>'


def section_html(files: Sequence[FileQC], missing: Sequence[tuple[str, str]], overview: bytes | None,
                 plots: Sequence[tuple[FileQC, str]], stats_rows: int) -> str:
    counts = verdict_counts(files)
    cards = "".join(f'<div class="card"><b>{counts[v]}</b>{_chip(v)}</div>' for v in verdicts.ORDER)
    parts = [f'<div class="cards">{cards}<div class="card"><b>{len(files)}</b>files</div></div>']
    if overview:
        uri = "data:image/png;base64," + base64.b64encode(overview).decode()
        parts.append(f'<h3>Batch overview</h3><figure id="overview"><img alt="batch overview: QC verdict, events, '
                     f'% cells and % singlets per file" src="{uri}"></figure>')
    parts.append(f'<p>Beside this report: <a href="{STATS_MERGED}">{STATS_MERGED}</a> (every analysis, file, '
                 f'population and channel; {stats_rows} rows) and <a href="{QC_TABLE}">{QC_TABLE}</a>.</p>')
    order = sorted(files, key=lambda f: (-verdicts.ORDER.index(f.verdict), f.analysis, f.file))
    rows = "".join(
        f"<tr><td>{_chip(f.verdict)}</td><td>{escape(f.analysis)}</td><td>{escape(f.file)}</td>"
        f"<td>{escape(f.well or '')}</td><td class=\"num\">{escape(count_text(f.events))}</td>"
        f"<td class=\"num\">{_pct(f.cells_pct)}</td><td class=\"num\">{_pct(f.singlets_pct)}</td>"
        f"<td>{escape('; '.join(f.reasons))}</td></tr>" for f in order)
    rows += "".join(f"<tr><td>{_chip('fail')}</td><td>{escape(a)}</td><td colspan=\"5\"></td>"
                    f"<td>analysis failed: {escape(why)}</td></tr>" for a, why in missing)
    parts.append('<h3>QC per file</h3><div class="scroll"><table id="qc-table"><thead><tr><th>verdict</th>'
                 '<th>analysis</th><th>file</th><th>well</th><th class="num">events</th><th class="num">% cells'
                 '</th><th class="num">% singlets</th><th>reasons</th></tr></thead><tbody>' + rows
                 + "</tbody></table></div>")
    if plots:
        figures = "".join(
            f'<figure><img class="thumb" alt="{escape(f.file)}" src="{escape(src)}">'
            f"<figcaption>{_chip(f.verdict)} {escape(f.analysis)}/{escape(f.file)}</figcaption></figure>"
            for f, src in plots if src.startswith("data:"))
        linked = [(f, src) for f, src in plots if not src.startswith("data:")]
        more = (f'<p class="muted">{len(linked)} more plots are beside their analyses\' outputs, e.g. '
                f"<code>{escape(linked[0][1])}</code>.</p>") if linked else ""
        parts.append(f'<h3>Plots</h3><div class="thumbs">{figures}</div>{more}')
    return "".join(parts)


def _pct(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.1f}%"


__all__ = ["FileQC", "headline", "results"]
