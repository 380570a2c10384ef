"""The cytometry pipeline (the product's default): per-file gating, statistics, QC and plots.

For every *.fcs file under the analysis folder: read it (FlowIO for HEADER/TEXT, numpy for
DATA), apply its spillover matrix, gate (automatic cells/singlets or the gates in params),
and measure every population. Outputs: stats.csv, qc.json, one <file>.png, summary.json.
The parts live in container/cytometry/; see its modules for the methods.
"""

from __future__ import annotations

import csv
import gc
import json
import math
import time
from pathlib import Path
from typing import Any

from container.cytometry import analysis, gatingfile, plots, stats, verdict
from container.cytometry import params as params_mod
from container.cytometry import qc as qc_checks
from container.cytometry.params import Params
from container.pipelines import InputError, PipelineContext, PipelineError, checked_params

STATS_CSV = "stats.csv"
QC_JSON = "qc.json"
SUMMARY_JSON = "summary.json"
BASE_COLUMNS = ["file", "population", "parent", "events", "pct_of_parent", "pct_of_total"]
CHANNEL_STATS = ("median", "mean", "geomean", "CV", "rCV")  # columns <channel>_<stat>

METHOD_NOTES = {
    "reading": "FlowIO 1.4.0 parses HEADER/TEXT (first data set); DATA decoded with numpy exactly as "
    "FlowData.as_array() (bit masks, $TIMESTEP, $PnE log amplification, $PnG gain), stored as float32",
    "compensation": "the file's $SPILLOVER/SPILL/$COMP matrix applied to the channels it names "
    "(observed = true x S); statistics are on compensated, linear values",
    "transform": "fluorescence channels are transformed for plots only; a gate's coordinates are in the "
    "unit its scale names (linear: data units, decades: log10 of data units, transformed: this scale on "
    "fluorescence and linear on scatter and time, the meaning of a gate without a scale); rectangle "
    "bounds are half-open, min <= x < max",
    "cells_gate": "FSC-A vs SSC-A: cut at the density valley of log10(FSC-A) between debris and cells, "
    "events with FSC-A <= 0 below it; without a debris population the 1st percentile of all events' "
    "FSC-A; saturated events and SSC <= 0 excluded; qc.json counts what each criterion removed",
    "singlets_gate": "FSC-H/FSC-A ratio (else FSC-W) within singlet_tolerance robust SDs (1.4826 MAD) "
    "of its median; not applied (flag unreliable_gates) when the band reaches 0, holds a doublet's "
    "value (half the ratio, twice the width) or keeps less than half of the cells",
    "statistics": "per population: events, % of parent, % of total; per channel in data units "
    "(compensated, linear): median and rCV = 100 * 0.5 * (P84.13 - P15.87) / median, exact percentiles "
    "with linear interpolation (as numpy.percentile), rCV empty when the median is <= 0; mean; "
    "geometric mean = exp(mean(ln x)) over the events with x > 0; CV = 100 * SD (n - 1) / mean, empty "
    "when the mean is <= 0",
    "qc": "saturated: fraction of events at $PnR - 1 above saturation_threshold; drift: spread (max - min) "
    "of each scatter and fluorescence channel's median over time_slices equal-duration slices of the "
    "cells, relative to its overall median (fluorescence: or its P84 - P16 width when larger), above "
    "drift_threshold; flow rate: events in 100 equal-duration bins, a pause over 5% of the acquisition "
    "is a gap, a bin over 4x the median rate a burst, over 10% of bins under 0.25x the median a clog; "
    "verdict per file: fail (unreadable, too few events), warn (any other finding), pass",
}


def run(ctx: PipelineContext) -> dict[str, Any]:
    params = checked_params(params_mod.parse, ctx.params, ctx.input_dir)
    files = sorted(p for p in ctx.input_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".fcs")
    if not files:
        raise InputError(f"no FCS files (*.fcs) found in the analysis folder {ctx.analysis or ''}".rstrip())
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    gating_file = None
    if params.gating_file is not None:
        try:
            path = ctx.path_of(params.gating_file)  # a batch-level ../name was staged by the entrypoint
            gating_file = gatingfile.load(path, params.sample_group, params.gating_file)
        except gatingfile.GatingFileError as exc:  # it would fail the same way again: bad input
            raise InputError(str(exc)) from None

    rows: list[dict[str, Any]] = []
    channels: list[str] = []
    qc: dict[str, Any] = {}
    populations: list[str] = []
    events = 0
    analysis_seconds = 0.0
    plot_names: set[str] = set()
    measurer = stats.Measurer()  # buffers reused across files
    plotter = plots.Plotter()  # one figure for all files
    for path in files:
        name = path.relative_to(ctx.input_dir).as_posix()
        start = time.perf_counter()
        try:
            result = analysis.analyse(path, name, params, measurer, gating_file)
        except Exception as exc:  # one bad file must not stop the others
            error = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            qc[name] = {"status": "failed", "error": error}
            qc[name].update(verdict.judge(qc[name]))
            ctx.log.warning("%s: failed: %s", name, error)
            continue
        qc_checks.checks(result.qc, result.sample, result.gating, params)
        plot_seconds = _plot(ctx, plotter, name, result, params, plot_names)
        rows.extend(result.rows)
        channels.extend(c for c in result.channels if c not in channels)
        populations.extend(p.name for p in result.gating.populations if p.name not in populations)
        qc[name] = result.qc
        events += result.sample.n_events
        analysis_seconds += result.seconds
        n = result.sample.n_events
        ctx.log.info(
            "%s: %d events, %d populations, %.2fs analysis (%.1f M events/s), %.2fs plot, %.2fs total",
            name,
            n,
            len(result.gating.populations),
            result.seconds,
            n / result.seconds / 1e6 if result.seconds else 0.0,
            plot_seconds,
            time.perf_counter() - start,
        )
        del result  # free the events before the next file is read
        # Matplotlib leaves reference cycles behind each figure; collected now, the next file's
        # events do not pile on top of them (peak memory stays proportional to one file's data).
        gc.collect()

    failed = {k: v["error"] for k, v in qc.items() if v["status"] == "failed"}
    analysed = len(qc) - len(failed)
    _write_stats(ctx.output_dir / STATS_CSV, rows, channels)
    _write_json(ctx.output_dir / QC_JSON, {"files": qc})
    summary = {
        "files_analysed": analysed,
        "files_failed": len(failed),
        "events": events,
        "populations": populations,
    }
    _write_json(
        ctx.output_dir / SUMMARY_JSON,
        {
            **summary,
            "failed_files": failed,
            "analysis_seconds": round(analysis_seconds, 3),
            "parameters": params.to_json(),
            "method": METHOD_NOTES,
            "outputs": [STATS_CSV, QC_JSON, SUMMARY_JSON, *sorted(plot_names)],
        },
    )
    if analysed == 0:
        # Every file failed the same deterministic way (unless memory ran out): bad input, exit 2.
        error = PipelineError if any("MemoryError" in v for v in failed.values()) else InputError
        raise error(
            f"no FCS file could be analysed ({len(failed)} failed): "
            + "; ".join(f"{k}: {v}" for k, v in failed.items())
        )
    return summary


def _plot(
    ctx: PipelineContext,
    plotter: plots.Plotter,
    name: str,
    result: analysis.FileResult,
    params: Params,
    used: set[str],
) -> float:
    start = time.perf_counter()
    stem = Path(name).with_suffix("").as_posix().replace("/", "__")
    png = f"{stem}.png"
    k = 2
    while png in used:
        png, k = f"{stem}_{k}.png", k + 1
    try:
        scale = analysis.scale_of(params)
        plotter.plot(ctx.output_dir / png, result.sample, result.gating, scale, params.max_plot_points, name)
    except Exception as exc:  # a plot is a convenience; the numbers stand without it
        result.qc["notes"].append(f"plot failed: {type(exc).__name__}: {exc}")
        ctx.log.warning("%s: plot failed: %s", name, exc)
    else:
        used.add(png)
        result.qc["plot"] = png
    return time.perf_counter() - start


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, ".9g")
    return value


def _write_stats(path: Path, rows: list[dict[str, Any]], channels: list[str]) -> None:
    columns = BASE_COLUMNS + [f"{c}_{s}" for c in channels for s in CHANNEL_STATS]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_clean(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
