"""Quality flags per file: too few events, saturation, signal drift over time, missing channels."""

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
MIN_SLICE_EVENTS = 20


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
    change = max(abs(m - overall) for m in present) / abs(overall) if overall and len(present) >= 2 else None
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
