"""Quality facts per file (qc.json): too few events, saturation, signal drift over time on every
scatter and fluorescence channel, flow-rate anomalies (gaps, bursts, clogs), empty gates, missing
channels. The verdict from these facts (pass / warn / fail) is container/cytometry/verdict.py's."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from container.cytometry import stats
from container.cytometry.fcs import Channel, Sample
from container.cytometry.gating import Gating
from container.cytometry.params import Params

DRIFT_SAMPLE = 200_000
CHANNEL_DRIFT_SAMPLE = 50_000  # per-channel slice medians: 5,000 events a slice is plenty
MIN_SLICE_EVENTS = 20
CHANNEL_SLICE_EVENTS = 200  # per-channel drift needs more: a bimodal marker's median jumps in small slices
FLOW_BINS = 100  # equal-duration bins of the acquisition for the flow rate
MIN_FLOW_EVENTS = 500  # fewer events say nothing about the flow rate
GAP_FRACTION = 0.05  # a pause in Time longer than this share of the acquisition is a gap
BURST_RATIO = 4.0  # a bin with this many times the median rate is a burst
CLOG_RATIO = 0.25  # a bin below this share of the median rate (but not empty) is slowed down
CLOG_FRACTION = 0.1  # this share of slowed-down bins is a clog


def drift(sample: Sample, gating: Gating, params: Params, key: Channel | None) -> dict[str, Any] | None:
    """Largest deviation of a key channel's median in equal-duration time slices from its overall median.

    Uses the cells population when there is one (debris comes and goes with the fluidics) and
    a strided subsample of at most 200,000 events, which is plenty for slice medians.
    """
    time = next((ch for ch in sample.channels if ch.kind == "time"), None)
    if time is None or key is None or sample.n_events < MIN_SLICE_EVENTS * params.time_slices:
        return None
    cells = gating.get("cells")
    mask = cells.mask if cells is not None else None
    idx = np.arange(sample.n_events) if mask is None else np.flatnonzero(mask)
    idx = idx[:: max(1, math.ceil(idx.size / DRIFT_SAMPLE))]
    t = sample.events[time.index][idx].astype(np.float64)
    v = sample.events[key.index][idx]
    t0, t1 = float(t.min()), float(t.max())
    if not t1 > t0:
        return None
    edges = np.linspace(t0, t1, params.time_slices + 1)
    grouped, ends = _by_slice(t, v, edges)
    medians = [
        stats.median(grouped[start:end]) if end - start >= MIN_SLICE_EVENTS else None
        for start, end in itertools.pairwise([0, *ends.tolist()])
    ]
    overall = stats.median(v)
    present = [m for m in medians if m is not None]
    # The spread of the slice medians, relative to the overall median: a steady climb of 37 % shows as
    # about 30 % (its deviation from the overall median would show only half of it).
    change = (max(present) - min(present)) / abs(overall) if overall and len(present) >= 2 else None
    return {
        "channel": key.name,
        "time_channel": time.name,
        "slice_medians": medians,
        "median": overall,
        "max_relative_change": change,
        "flagged": bool(change is not None and change > params.drift_threshold),
    }


def _by_slice(t: np.ndarray, v: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """v grouped by time slice (stably) and each slice's end; slice i holds edges[i] <= t < edges[i + 1],
    the last one t == edges[-1] too (np.searchsorted(edges, t, side="right") - 1, clipped)."""
    slices = edges.size - 1
    if np.all(t[1:] >= t[:-1]):  # time never decreases (the usual case): the slices are runs already
        ends = np.searchsorted(t, edges[1:slices], side="left")
        return v, np.append(ends, t.size)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, slices - 1)
    ends = np.cumsum(np.bincount(which, minlength=slices))
    return v[np.argsort(which, kind="stable")], ends


def drift_channel(sample: Sample, params: Params, fsc: Channel | None) -> Channel | None:
    if params.drift_channel is not None:
        return sample.find(params.drift_channel)
    if fsc is not None:
        return fsc
    return next((ch for ch in sample.channels if ch.kind == "fluorescence"), None)


def flags(sample: Sample, gating: Gating, params: Params, drift_result: dict[str, Any] | None) -> dict[str, Any]:
    saturated = sorted(name for name, frac in sample.saturation.items() if frac > params.saturation_threshold)
    missing = list(gating.missing_channels)
    if params.drift_channel is not None and sample.find(params.drift_channel) is None:
        missing.append(params.drift_channel)
    return {
        "too_few_events": sample.n_events < params.min_events,
        "saturated_channels": saturated,
        "signal_drift": bool(drift_result and drift_result["flagged"]),
        "missing_channels": missing,
        "empty_gates": list(gating.empty_gates),
        "gates_outside_data": list(gating.gates_outside_data),
        "unreliable_gates": list(gating.unreliable_gates),
    }


def _time_channel(sample: Sample) -> Channel | None:
    return next((ch for ch in sample.channels if ch.kind == "time"), None)


def flow_rate(sample: Sample) -> dict[str, Any] | None:
    """Events per equal-duration bin of the acquisition: the longest pause, the busiest bin and the
    share of slowed-down bins, each against the median rate. In the file's time units ($TIMESTEP
    applied: seconds when the instrument writes it)."""
    time = _time_channel(sample)
    if time is None or sample.n_events < MIN_FLOW_EVENTS:
        return None
    t = sample.events[time.index].astype(np.float64)
    if not np.all(t[1:] >= t[:-1]):
        t = np.sort(t)
    t0, t1 = float(t[0]), float(t[-1])
    duration = t1 - t0
    if not duration > 0:
        return None
    gaps = np.diff(t)
    at = int(np.argmax(gaps))
    gap = float(gaps[at]) / duration
    counts = np.bincount(np.minimum(((t - t0) / duration * FLOW_BINS).astype(np.int64), FLOW_BINS - 1),
                         minlength=FLOW_BINS)
    busy = counts[counts > 0]
    median = float(np.median(busy))
    peak = int(np.argmax(counts))
    slowed = float(np.mean((counts > 0) & (counts < CLOG_RATIO * median)))
    return {
        "time_channel": time.name,
        "duration": duration,
        "events_per_time_unit": sample.n_events / duration,
        "largest_gap_fraction": gap,
        "largest_gap_at": float(t[at]) - t0,
        "peak_ratio": float(counts[peak]) / median if median else None,
        "peak_at": (peak + 0.5) * duration / FLOW_BINS,
        "slowed_fraction": slowed,
        "gap": gap > GAP_FRACTION,
        "burst": bool(median and counts[peak] > BURST_RATIO * median),
        "clog": slowed > CLOG_FRACTION,
    }


def channel_drift(sample: Sample, gating: Gating, params: Params) -> dict[str, float]:
    """Per scatter and fluorescence channel: the spread of its median over `time_slices` equal-duration
    slices of the cells, relative to the overall median (or, for a fluorescence channel whose median
    is near zero, to its robust width P84 - P16)."""
    time = _time_channel(sample)
    if time is None or sample.n_events < CHANNEL_SLICE_EVENTS * params.time_slices:
        return {}
    cells = gating.get("cells")
    idx = np.arange(sample.n_events) if cells is None or cells.mask is None else np.flatnonzero(cells.mask)
    idx = idx[:: max(1, math.ceil(idx.size / CHANNEL_DRIFT_SAMPLE))]
    t = sample.events[time.index][idx].astype(np.float64)
    if t.size < CHANNEL_SLICE_EVENTS * params.time_slices or not float(t.max()) > float(t.min()):
        return {}
    edges = np.linspace(float(t.min()), float(t.max()), params.time_slices + 1)
    out: dict[str, float] = {}
    for ch in sample.channels:
        if ch.kind not in ("scatter", "fluorescence"):
            continue
        v = sample.events[ch.index][idx].astype(np.float64)
        grouped, ends = _by_slice(t, v, edges)
        medians = [float(np.median(grouped[a:b])) for a, b in itertools.pairwise([0, *ends.tolist()])
                   if b - a >= CHANNEL_SLICE_EVENTS]
        if len(medians) < 2:
            continue
        p16, mid, p84 = np.percentile(v, [15.87, 50, 84.13])
        scale = abs(mid) if ch.kind == "scatter" else max(abs(mid), p84 - p16)
        if scale > 0:
            out[ch.name] = (max(medians) - min(medians)) / float(scale)
    return out


def checks(entry: dict[str, Any], sample: Sample, gating: Gating, params: Params) -> dict[str, Any]:
    """The facts added to a file's qc.json entry beyond analysis.py's flags, then its verdict."""
    from container.cytometry import verdict

    drifts = channel_drift(sample, gating, params)
    populations = {
        p.name: {"events": p.count, "parent": p.parent,
                 "pct_of_parent": _pct(p.count, (gating.get(p.parent).count if gating.get(p.parent) else None))}
        for p in gating.populations
    }
    entry.update({
        "well": (sample.text.get("wellid") or "").strip() or None,
        "flow_rate": flow_rate(sample),
        "channel_drift": {k: round(v, 4) for k, v in drifts.items()},
        "drifting_channels": sorted(k for k, v in drifts.items() if v > params.drift_threshold),
        "empty_gates": [p.name for p in gating.populations if p.count == 0],
        "populations": populations,
    })
    entry.update(verdict.judge(entry))
    return entry


def _pct(count: int, parent: int | None) -> float | None:
    return round(100.0 * count / parent, 3) if parent else None
