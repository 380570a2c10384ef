"""Gates: the data-driven cells and singlets gates, and rectangle/polygon gates from params.

Populations are boolean masks over all events (the root "all" has none). Gate geometry is kept
in the units each gate names (units.py): data units, decades, or the transformed scale.

Cells (debris) gate, on FSC-A vs SSC-A: a smoothed histogram of log10(FSC-A) of the positive
events (a subsample of at most 100,000, 128 bins between the 0.5th and 99.5th percentiles,
Gaussian smoothing of 2 bins) is searched for the deepest valley below the cell peak (the
highest one; above it lie doublets), or above it when that highest peak is the lowest-FSC one and
another peak of at least a quarter of its height follows (debris outnumbering cells). A valley
counts if it is below half of both peaks around it; the cut is then its FSC-A value, and the
events with FSC-A <= 0 lie below it with the debris. Without such a valley there is no debris
population to remove: the cut falls back to the 1st percentile of all events' FSC-A (those at or
below 0 included), so that it removes 1% as it says, not every event at or below 0. Events at
the top of either channel's range (saturated) and with SSC-A <= 0 are excluded as well; the
method records how many events each criterion removed, and a note says when many events have
FSC-A <= 0 (noise at the trigger threshold: buffer-only or low-count samples).

Singlets gate, on FSC-A vs FSC-H: doublets have a larger area for their height, so singlets are
the cells whose FSC-H/FSC-A ratio lies within `singlet_tolerance` robust SDs (1.4826 x MAD) of
the median ratio (events with FSC-A <= 0 have no ratio and are not singlets). Without an FSC
height channel, FSC-W is used: doublets are wider, so singlets
are the cells whose FSC-W lies within the same band around its median. A band is used only if
it can tell a doublet from a singlet: it must exclude half the median ratio (or twice the median
width), the signal of two cells passing as one, lie above 0, and keep at least half of the cells
(doublets are never the majority). Otherwise the gate is not
applied: the file's `unreliable_gates` flag names it and a note gives the band.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from flowutils import gating as fu_gating

from container.cytometry import stats, units
from container.cytometry.fcs import Channel, Sample
from container.cytometry.params import ROOT, Gate, Params
from container.cytometry.transforms import Scale

GATING_SAMPLE = 100_000
MIN_GATING_EVENTS = 50
MIN_SINGLET_SHARE = 0.5  # a singlet band that removes most cells is measuring something else

_FSC_AREA = ("FSC-A", "FSC", "FS", "FS-A", "FSC-AREA", "FS-INT-LIN", "FS-LIN", "FSC-LIN")
_FSC_HEIGHT = ("FSC-H", "FS-H", "FSC-HEIGHT", "FSC-HLIN", "FS-PEAK", "FSC-PEAK", "FS-PEAK-LIN")
_SSC_AREA = ("SSC-A", "SSC", "SS", "SS-A", "SSC-AREA", "SS-INT-LIN", "SS-LIN", "SSC-LIN")
_FSC_WIDTH = ("FSC-W", "FS-W", "FSC-WIDTH", "FS-WIDTH")
_SSC_HEIGHT = ("SSC-H", "SS-H", "SSC-HEIGHT", "SSC-HLIN", "SS-PEAK", "SSC-PEAK", "SS-PEAK-LIN")


@dataclass(frozen=True)
class Shape:
    """A gate as drawn: axes, and either a rectangle, a polygon, or a ratio band y = k * x."""

    kind: str  # "rectangle" | "polygon" | "band"
    x: Channel
    y: Channel | None
    x_unit: str  # "linear" | "decades" | "transformed" (see units.py); coordinates are in it
    y_unit: str | None
    rect: tuple[float | None, float | None, float | None, float | None] | None = None
    vertices: tuple[tuple[float, float], ...] | None = None
    band: tuple[float, float] | None = None


@dataclass
class Population:
    name: str
    parent: str
    mask: np.ndarray | None  # None: every event
    count: int
    shape: Shape | None = None
    auto: bool = False


@dataclass
class Gating:
    populations: list[Population]
    missing_channels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    method: dict[str, object] = field(default_factory=dict)
    empty_gates: list[str] = field(default_factory=list)  # gated populations holding 0 events
    unreliable_gates: list[str] = field(default_factory=list)  # automatic gates not applied: no sane band
    gates_outside_data: list[str] = field(default_factory=list)  # regions no event of the file can reach

    def get(self, name: str) -> Population | None:
        return next((p for p in self.populations if p.name == name), None)


def _normal(name: str) -> str:
    return name.strip().upper().replace(" ", "-").replace("_", "-")


def _find(sample: Sample, override: str | None, candidates: tuple[str, ...]) -> Channel | None:
    if override is not None:
        return sample.find(override)
    for attr in ("name", "label"):
        for cand in candidates:
            for ch in sample.channels:
                if _normal(getattr(ch, attr)) == cand:
                    return ch
    return None


def scatter_channels(
    sample: Sample, params: Params
) -> tuple[Channel | None, Channel | None, Channel | None, list[str], list[str]]:
    """(FSC area, FSC height, SSC, missing channel names, notes) for the automatic gates."""
    missing: list[str] = []
    notes: list[str] = []
    fsc_a = _find(sample, params.fsc_area, _FSC_AREA)
    fsc_h = _find(sample, params.fsc_height, _FSC_HEIGHT)
    ssc = _find(sample, params.ssc_area, _SSC_AREA)
    if ssc is None and params.ssc_area is None:
        ssc = _find(sample, None, _SSC_HEIGHT)
        if ssc is not None:
            notes.append(f"no SSC area channel; the cells gate uses {ssc.name}")
    if fsc_a is None and params.fsc_area is None and fsc_h is not None:
        notes.append(f"no FSC area channel; the cells gate uses {fsc_h.name}")
        fsc_a, fsc_h = fsc_h, None
        missing.append("FSC-A")
    if fsc_a is None:
        missing.append(params.fsc_area or "FSC-A")
    if ssc is None:
        missing.append(params.ssc_area or "SSC-A")
    if fsc_h is None and "FSC-A" not in missing and width_channel(sample, params) is None:
        missing.append(params.fsc_height or "FSC-H")
    return fsc_a, fsc_h, ssc, missing, notes


def width_channel(sample: Sample, params: Params) -> Channel | None:
    return _find(sample, params.fsc_width, _FSC_WIDTH)


def _subsample(values: np.ndarray, limit: int = GATING_SAMPLE) -> np.ndarray:
    step = max(1, math.ceil(values.size / limit))
    return values[::step]


def debris_cut(fsc: np.ndarray, top: float) -> tuple[float, str]:
    """FSC value below which events are debris, and how it was found."""
    below_top = fsc[np.isfinite(fsc) & (fsc < top)].astype(np.float64)
    v = below_top[below_top > 0]
    if v.size < MIN_GATING_EVENTS:
        if not below_top.size:
            return 0.0, "no FSC values below the top of scale"
        return stats.percentile(below_top, [1])[0], "1st percentile of FSC (too few positive events for a density)"
    logs = np.log10(v)
    logs.sort()  # one sort serves both the percentiles and the histogram
    lo, hi = stats.sorted_percentile(logs, [0.5, 99.5])
    if hi - lo < 1e-6:
        return stats.percentile(below_top, [1])[0], "1st percentile of FSC (FSC has no spread)"
    hist, edges = stats.sorted_histogram(logs, 128, lo, hi)
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    smooth = np.convolve(hist, kernel / kernel.sum(), mode="same")
    maxima = [
        i
        for i in range(len(smooth))
        if smooth[i] >= 0.05 * smooth.max()
        and smooth[i] >= smooth[max(i - 1, 0)]
        and smooth[i] > smooth[min(i + 1, len(smooth) - 1)]
    ]
    main = int(np.argmax(smooth))
    best: tuple[float, int] | None = None
    for left, right in itertools.pairwise(maxima):
        valley = left + int(np.argmin(smooth[left : right + 1]))
        depth = smooth[valley] / min(smooth[left], smooth[right])
        # Debris lies below the cell peak (the highest one); a valley above it is cells vs
        # doublets. Only when debris outnumbers cells may the cut lie above the highest peak.
        dominant_debris = left == main == maxima[0] and smooth[right] >= 0.25 * smooth[main]
        if depth < 0.5 and (right <= main or dominant_debris) and (best is None or depth < best[0]):
            best = (depth, valley)
    # a debris peak sitting at the low edge of the histogram shows as a falling start
    if best is None and main > 0:
        valley = int(np.argmin(smooth[: main + 1]))
        if 0 < valley < main and smooth[valley] < 0.5 * min(smooth[0], smooth[main]):
            best = (smooth[valley] / min(smooth[0], smooth[main]), valley)
    if best is not None:
        centre = 0.5 * (edges[best[1]] + edges[best[1] + 1])
        return float(10**centre), "density valley of log10(FSC) between debris and cells"
    return stats.percentile(below_top, [1])[0], "1st percentile of FSC (no debris population found)"


def singlet_band(ratio: np.ndarray, tolerance: float) -> tuple[float, float]:
    median = stats.median(ratio)
    spread = 1.4826 * stats.median(np.abs(ratio - median))
    spread = max(spread, 1e-3 * abs(median))  # an all-identical ratio still gets a band
    return median - tolerance * spread, median + tolerance * spread


def band_problem(lo: float, hi: float, doublet: float, measure: str) -> str | None:
    """Why a singlet band cannot tell a doublet from a singlet, or None when it can."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
        return f"the {measure} band [{lo:.3g}, {hi:.3g}] reaches 0 or below, so it cannot tell doublets from singlets"
    if lo <= doublet <= hi:
        return f"the {measure} band [{lo:.3g}, {hi:.3g}] holds {doublet:.3g}, where a doublet lies"
    return None


def gate(sample: Sample, params: Params, scale: Scale) -> Gating:
    n = sample.n_events
    result = Gating([Population(ROOT, "", None, n)])
    # The automatic gates run when no gates are given, or when a given gate hangs below them.
    wanted = {g.parent for g in params.gates} & {"cells", "singlets"} if params.gates else {"cells"}
    if not params.gates:
        wanted.add("singlets")
    if wanted:
        _auto(sample, params, result, want_singlets="singlets" in wanted)
    for g in params.gates:
        _user(sample, scale, g, result)
    for pop in result.populations[1:]:
        if pop.count == 0:
            result.empty_gates.append(pop.name)
            if pop.name not in result.gates_outside_data:
                result.notes.append(f"gate {pop.name!r} holds 0 events")
    return result


def _auto(sample: Sample, params: Params, result: Gating, want_singlets: bool) -> None:
    fsc_a, fsc_h, ssc, missing, notes = scatter_channels(sample, params)
    result.notes.extend(notes)
    result.missing_channels.extend(m for m in missing if want_singlets or m != "FSC-H")
    if fsc_a is None or ssc is None:
        result.notes.append("cells and singlets gates skipped: scatter channels missing")
        return
    if sample.n_events < MIN_GATING_EVENTS:
        result.notes.append(f"cells and singlets gates skipped: fewer than {MIN_GATING_EVENTS} events")
        return
    ev = sample.events
    fsc, side = ev[fsc_a.index], ev[ssc.index]
    cut, how = debris_cut(_subsample(fsc), fsc_a.top)
    below = fsc < np.float32(cut)
    fsc_sat = fsc >= np.float32(fsc_a.top)
    side_low = side <= 0
    side_sat = side >= np.float32(ssc.top)
    cells = ~(below | fsc_sat | side_low | side_sat)
    shape = Shape("rectangle", fsc_a, ssc, "linear", "linear", rect=(cut, fsc_a.top, 0.0, ssc.top))
    result.populations.append(Population("cells", ROOT, cells, int(np.count_nonzero(cells)), shape, True))
    nonpositive = fsc <= 0
    n_nonpositive = int(np.count_nonzero(nonpositive))
    removed_nonpositive = int(np.count_nonzero(nonpositive & below))
    result.method["cells"] = {
        "fsc": fsc_a.name,
        "ssc": ssc.name,
        "fsc_cut": cut,
        "method": how,
        # each criterion's count on its own (an event may meet several)
        "removed": {
            "fsc_below_cut": int(np.count_nonzero(below)),
            "fsc_at_or_below_0": removed_nonpositive,
            "fsc_saturated": int(np.count_nonzero(fsc_sat)),
            "ssc_at_or_below_0": int(np.count_nonzero(side_low)),
            "ssc_saturated": int(np.count_nonzero(side_sat)),
        },
    }
    share = n_nonpositive / sample.n_events
    if share > 0.05:
        fate = (
            f"{removed_nonpositive:,} of them lie below the debris cut and were removed"
            if removed_nonpositive
            else "they were kept in cells"
        )
        result.notes.append(
            f"{n_nonpositive:,} events ({100 * share:.1f}%) have {fsc_a.name} <= 0 (noise at the trigger "
            f"threshold, typical of buffer-only or low-count samples); {fate}"
        )
    if want_singlets:
        _singlets(sample, params, result, fsc_a, fsc_h, cells)


def _singlets(
    sample: Sample, params: Params, result: Gating, fsc_a: Channel, fsc_h: Channel | None, cells: np.ndarray
) -> None:
    width = None if fsc_h is not None else width_channel(sample, params)
    if fsc_h is None and width is None:
        result.notes.append("singlets gate skipped: it needs an FSC area and an FSC height (or width) channel")
        return
    ev = sample.events
    fsc = ev[fsc_a.index]
    idx = _subsample(np.flatnonzero(cells))
    area_s = fsc[idx]
    keep = area_s > 0
    if np.count_nonzero(keep) < MIN_GATING_EVENTS:
        result.notes.append("singlets gate skipped: too few cells")
        return
    if fsc_h is not None:
        height = ev[fsc_h.index]
        median = stats.median(height[idx][keep] / area_s[keep])
        lo, hi = singlet_band(height[idx][keep] / area_s[keep], params.singlet_tolerance)
        problem = band_problem(lo, hi, median / 2, f"{fsc_h.name}/{fsc_a.name} ratio")
        other, method = fsc_h, {"fsc_area": fsc_a.name, "fsc_height": fsc_h.name, "ratio_band": [lo, hi]}
    else:
        assert width is not None
        widths = ev[width.index]
        median = stats.median(widths[idx][keep])
        lo, hi = singlet_band(widths[idx][keep], params.singlet_tolerance)
        problem = band_problem(lo, hi, 2 * median, f"{width.name}")
        other, method = width, {"fsc_area": fsc_a.name, "fsc_width": width.name, "width_band": [lo, hi]}
    if problem is None:
        if fsc_h is not None:
            singlets = cells & (height >= fsc * np.float32(lo))
            singlets &= height <= fsc * np.float32(hi)
            shape = Shape("band", fsc_a, fsc_h, "linear", "linear", band=(lo, hi))
        else:
            singlets = cells & (widths >= np.float32(lo))
            singlets &= widths <= np.float32(hi)
            shape = Shape("rectangle", fsc_a, other, "linear", "linear", rect=(None, None, lo, hi))
        n_cells = int(np.count_nonzero(cells))
        kept = np.count_nonzero(singlets) / n_cells if n_cells else 0.0
        if kept < MIN_SINGLET_SHARE:
            problem = f"it would keep only {100 * kept:.1f}% of cells, and doublets are never the majority"
    if problem is not None:
        result.unreliable_gates.append("singlets")
        result.method["singlets"] = {**method, "applied": False}
        result.notes.append(
            f"singlets gate not applied: {problem} (median {median:.3g}); "
            "set singlet_tolerance or gate singlets yourself"
        )
        return
    count = int(np.count_nonzero(singlets))
    result.populations.append(Population("singlets", "cells", singlets, count, shape, True))
    result.method["singlets"] = {**method, "applied": True}


def _user(sample: Sample, scale: Scale, g: Gate, result: Gating) -> None:
    parent = result.get(g.parent)
    x = sample.find(g.x)
    y = sample.find(g.y) if g.y is not None else None
    lacking = [name for name, ch in ((g.x, x), (g.y, y)) if name is not None and ch is None]
    if lacking:
        result.missing_channels.extend(c for c in lacking if c not in result.missing_channels)
        result.notes.append(f"gate {g.name!r} skipped: channel(s) {', '.join(lacking)} not in file")
        return
    if parent is None:
        result.notes.append(f"gate {g.name!r} skipped: parent {g.parent!r} could not be gated")
        return
    assert x is not None
    x_unit = units.effective(g.x_unit, x, scale)
    y_unit = units.effective(g.y_unit, y, scale) if y is not None and g.y_unit is not None else None
    if not g.scale_named and "transformed" in (x_unit, y_unit):
        axes = [ch.name for ch, u in ((x, x_unit), (y, y_unit)) if ch is not None and u == "transformed"]
        result.notes.append(
            f"gate {g.name!r} names no scale: its {', '.join(axes)} coordinates were read in the "
            f"{scale.kind} unit (the old default); add \"scale\": \"linear\" to give data units"
        )
    if g.type == "rectangle":
        x0, x1 = g.x_bounds or (None, None)
        y0, y1 = g.y_bounds or (None, None)
        extent = [(x, x_unit, x0, x1)] + ([(y, y_unit or "linear", y0, y1)] if y is not None else [])
        mask = _rectangle(sample, scale, extent, parent)
        shape = Shape("rectangle", x, y, x_unit, y_unit, rect=(x0, x1, y0, y1))
    else:
        assert y is not None and y_unit is not None and g.vertices is not None
        verts = np.asarray(g.vertices, dtype=np.float64)
        extent = [
            (x, x_unit, float(verts[:, 0].min()), float(verts[:, 0].max())),
            (y, y_unit, float(verts[:, 1].min()), float(verts[:, 1].max())),
        ]
        mask = _polygon(sample, scale, g.vertices, extent, parent)
        shape = Shape("polygon", x, y, x_unit, y_unit, vertices=g.vertices)
    count = int(np.count_nonzero(mask))
    result.populations.append(Population(g.name, g.parent, mask, count, shape))
    _check_reach(sample, scale, g.name, extent, result)


Extent = list[tuple[Channel, str, float | None, float | None]]  # per axis: channel, unit, low, high


def _data_range(scale: Scale, ch: Channel, unit: str, lo: float | None, hi: float | None) -> tuple[float, float]:
    low = -math.inf if lo is None else units.to_data(lo, ch, unit, scale)
    high = math.inf if hi is None else units.to_data(hi, ch, unit, scale)
    return low, high


def _check_reach(sample: Sample, scale: Scale, name: str, extent: Extent, result: Gating) -> None:
    """A QC warning for a region that no event of the file can reach (a gate in the wrong units)."""
    for ch, unit, lo, hi in extent:
        low, high = _data_range(scale, ch, unit, lo, hi)
        values = sample.events[ch.index]
        vmin, vmax = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low > vmax or high <= vmin:
            result.gates_outside_data.append(name)
            result.notes.append(
                f"gate {name!r} lies outside the data: on {ch.name} it spans {low:.4g} to {high:.4g} in data "
                f"units, the file's events span {vmin:.4g} to {vmax:.4g} (top of scale {ch.top:.4g}); "
                "check the gate's scale and units"
            )
            break


def _rectangle(sample: Sample, scale: Scale, extent: Extent, parent: Population) -> np.ndarray:
    mask = np.ones(sample.n_events, dtype=bool) if parent.mask is None else parent.mask.copy()
    for ch, unit, lo, hi in extent:
        values = sample.events[ch.index]
        low, high = _data_range(scale, ch, unit, lo, hi)
        if lo is not None:
            mask &= values >= np.float32(low)
        if hi is not None:
            mask &= values < np.float32(high)  # half-open, as GatingML 2.0 and FlowKit
    return mask


def _polygon(
    sample: Sample,
    scale: Scale,
    vertices: tuple[tuple[float, float], ...],
    extent: Extent,
    parent: Population,
) -> np.ndarray:
    verts = np.asarray(vertices, dtype=np.float64)
    (x, x_unit, _, _), (y, y_unit, _, _) = extent
    xs, ys = sample.events[x.index], sample.events[y.index]
    # Bounding box first, in data units: only the events inside it need the exact test.
    box = np.ones(sample.n_events, dtype=bool) if parent.mask is None else parent.mask.copy()
    for (ch, unit, lo, hi), values in zip(extent, (xs, ys), strict=True):
        low, high = _data_range(scale, ch, unit, lo, hi)
        box &= values >= np.float32(low)
        box &= values <= np.float32(high)
    idx = np.flatnonzero(box)
    px = units.to_axis(xs[idx], x, x_unit, scale)
    py = units.to_axis(ys[idx], y, y_unit, scale)
    points = np.column_stack([px, py]).astype(np.float64)
    inside = fu_gating.points_in_polygon(verts, points) if idx.size else np.zeros(0, dtype=bool)
    mask = np.zeros(sample.n_events, dtype=bool)
    mask[idx[inside]] = True
    return mask
