"""One PNG per file that a cytometrist reads at a glance.

- Every gate with a shape is a panel: the parent's events as a density (pseudocolour) plot, the gate
  drawn over it with its name and % of parent; a one-channel gate is a histogram with its bounds.
- Automatic gating (or no gate to draw) adds a fluorescence overview: the histogram of each
  fluorescence channel over the singlets (or cells, or all events). A file without scatter gates
  gets a density plot of its first two channels instead of a blank image.
- Axes are in data units: fluorescence shown on its logicle/arcsinh scale is labelled at decades
  (0, 10², 10³, …, spaced so they never overlap), never in 0-1 units; scatter is linear with 50k-style labels.
  Ranges come from the data (0.5th-99.5th percentile, padded), not from $PnR.

One Figure on an Agg canvas is reused for every file (no pyplot figure registry, no per-file figure
garbage waiting for the cyclic collector), with a fixed layout instead of tight_layout; images are
drawn with imshow of a 2-D histogram (not one marker per event).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon as PolygonPatch
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from container.cytometry.fcs import Channel, Sample
from container.cytometry.gating import Gating, Population, Shape
from container.cytometry.transforms import Scale

MAX_GATE_PANELS = 4
PANEL_INCHES = 3.0
DPI = 80
BINS = 128
ROBUST = (0.5, 99.5)  # percentiles that set an axis's range
_CMAP = colormaps["turbo"].with_extremes(bad="white")
_DECADES = [0.0] + [s * 10.0**k for k in range(1, 8) for s in (1, -1)]
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_HIST_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                 "tab:olive", "tab:cyan", "tab:gray"]


def _sample_index(pop: Population | None, n: int, limit: int) -> np.ndarray:
    idx = np.arange(n) if pop is None or pop.mask is None else np.flatnonzero(pop.mask)
    return idx[:: max(1, math.ceil(idx.size / limit))]


class Axis:
    """One channel as shown: its display coordinates, range and ticks."""

    def __init__(self, ch: Channel, scale: Scale) -> None:
        self.ch = ch
        self.scale = scale
        self.scaled = scale.applies(ch)

    def values(self, sample: Sample, idx: np.ndarray) -> np.ndarray:
        raw = sample.events[self.ch.index][idx]
        return np.asarray(self.scale.forward(raw, self.ch) if self.scaled else raw, dtype=np.float64)

    def from_gate(self, values: np.ndarray, unit: str) -> np.ndarray:
        """Gate coordinates in `unit` ("linear" data units, "decades" = log10 of them, "transformed" =
        the display scale on fluorescence) in display coordinates, through data units."""
        values = np.asarray(values, dtype=np.float64)
        if unit == "transformed" and self.scaled:
            return values
        if unit == "decades":
            values = np.power(10.0, values)
        # now data units ("transformed" is linear on a channel off the display scale)
        return np.asarray(self.scale.forward(values, self.ch), dtype=np.float64) if self.scaled else values

    def label(self) -> str:
        ch = self.ch
        name = f"{ch.label} ({ch.name})" if ch.label and ch.label != ch.name else ch.name
        return f"{name} [{self.scale.kind}]" if self.scaled else name

    def decorate(self, ax: Axes, which: str, lo: float, hi: float) -> None:
        axis = ax.xaxis if which == "x" else ax.yaxis
        if self.scaled:
            major = np.asarray(self.scale.forward(np.array(_DECADES), self.ch), dtype=np.float64)
            labels = _spaced(major, lo, hi)
            axis.set_major_locator(FixedLocator(sorted(labels)))
            axis.set_major_formatter(FuncFormatter(lambda p, _: labels.get(float(p), "")))
        else:
            axis.set_major_locator(MaxNLocator(4))
            axis.set_major_formatter(FuncFormatter(lambda v, _: _linear(v)))


def _spaced(positions: np.ndarray, lo: float, hi: float, gap: float = 0.09) -> dict[float, str]:
    """Decade labels that do not overlap: 0 first, then the largest decades, each kept only when it
    is at least `gap` of the axis away from those kept (logicle squeezes the small ones together)."""
    kept: dict[float, str] = {}
    span = hi - lo
    order = sorted(range(len(_DECADES)), key=lambda i: (_DECADES[i] != 0, -abs(_DECADES[i])))
    for i in order:
        p = float(positions[i])
        if lo <= p <= hi and all(abs(p - q) >= gap * span for q in kept):
            kept[p] = _decade(_DECADES[i])
    return kept


def _decade(value: float) -> str:
    if value == 0:
        return "0"
    exponent = str(round(math.log10(abs(value)))).translate(_SUPERSCRIPT)
    return f"{'-' if value < 0 else ''}10{exponent}"


def _linear(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def robust_range(values: np.ndarray, extra: np.ndarray | None = None) -> tuple[float, float]:
    """The 0.5th-99.5th percentile of the values, padded by 5 %, widened to hold `extra` (a gate)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (float(v) for v in np.percentile(finite, ROBUST))
    if extra is not None and extra.size:
        shown = extra[np.isfinite(extra)]
        if shown.size:
            lo, hi = min(lo, float(shown.min())), max(hi, float(shown.max()))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - 0.05 * span, hi + 0.05 * span


def _density(ax: Axes, x: np.ndarray, y: np.ndarray, xr: tuple[float, float], yr: tuple[float, float]) -> None:
    counts, _, _ = np.histogram2d(x, y, bins=BINS, range=(xr, yr))
    shown = np.ma.masked_equal(np.log1p(counts.T), 0.0)
    ax.imshow(shown, origin="lower", extent=(*xr, *yr), aspect="auto", cmap=_CMAP, interpolation="nearest")


def _pct(pop: Population, gating: Gating, n_events: int) -> float:
    parent = gating.get(pop.parent)
    parent_count = parent.count if parent else n_events
    return 100.0 * pop.count / parent_count if parent_count else 0.0


def _gate_label(ax: Axes, pop: Population, pct: float, x: float, y: float) -> None:
    ax.text(x, y, f"{pop.name}\n{pct:.1f}%", fontsize=8, color="black", va="top", ha="left",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.4", "alpha": 0.85})


def _gate_panel(ax: Axes, sample: Sample, gating: Gating, scale: Scale, pop: Population, limit: int) -> None:
    shape = pop.shape
    assert shape is not None
    idx = _sample_index(gating.get(pop.parent), sample.n_events, limit)
    xa = Axis(shape.x, scale)
    x = xa.values(sample, idx)
    pct = _pct(pop, gating, sample.n_events)
    if shape.y is None:
        _histogram_gate(ax, xa, x, shape, pop, pct)
        return
    ya = Axis(shape.y, scale)
    y = ya.values(sample, idx)
    outline_x, outline_y = _outline(shape, xa, ya, x, y)
    # A polygon is shown whole; a rectangle or band is cut at the data's range (an automatic gate's
    # far sides sit at the top of the scale, which would squash the events into a corner).
    xr = robust_range(x, outline_x if shape.kind == "polygon" else None)
    yr = robust_range(y, outline_y if shape.kind == "polygon" else None)
    _density(ax, x, y, xr, yr)
    if outline_x.size:
        if shape.kind == "band":
            half = outline_x.size // 2
            ax.plot(outline_x[:half], outline_y[:half], color="black", lw=1.2)
            ax.plot(outline_x[half:], outline_y[half:], color="black", lw=1.2)
        else:
            ax.add_patch(PolygonPatch(np.column_stack([outline_x, outline_y]), closed=True, fill=False,
                                      ec="black", lw=1.4))
    inside = (float(np.clip(np.min(outline_x), *xr)), float(np.clip(np.max(outline_y), *yr))) \
        if outline_x.size else (xr[0], yr[1])
    _gate_label(ax, pop, pct, inside[0], inside[1])
    _frame_2d(ax, xa, ya, xr, yr, f"{pop.parent} → {pop.name}: {pop.count:,} ({pct:.1f}%)")


def _frame_2d(ax: Axes, xa: Axis, ya: Axis, xr: tuple[float, float], yr: tuple[float, float], title: str) -> None:
    """Limits, decade ticks, labels and title of a two-channel panel."""
    ax.set_xlim(xr)
    ax.set_ylim(yr)
    xa.decorate(ax, "x", *xr)
    ya.decorate(ax, "y", *yr)
    ax.set_xlabel(xa.label(), fontsize=8)
    ax.set_ylabel(ya.label(), fontsize=8)
    ax.set_title(title, fontsize=8)


def gate_unit(shape: Shape, axis: str) -> str:
    """The unit of a gate's coordinates on one axis. Shapes name it (`x_unit`); a shape from before
    units were named says only whether the axis is on the display scale (`x_scaled`)."""
    unit = getattr(shape, f"{axis}_unit", None)
    if unit is not None:
        return str(unit)
    return "transformed" if getattr(shape, f"{axis}_scaled", False) else "linear"


def _outline(shape: Shape, xa: Axis, ya: Axis, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gate's outline in display coordinates (a band: its two lines, one after the other); an open
    side of a rectangle ends at the edge of the data's range."""
    if shape.kind == "band" and shape.band is not None and x.size:
        xs = np.linspace(0.0, float(np.percentile(x, 99.9)) * 1.1, 2)
        lines = [(xs, k * xs) for k in shape.band]
        return np.concatenate([a for a, _ in lines]), np.concatenate([b for _, b in lines])
    if shape.kind == "polygon" and shape.vertices is not None:
        v = np.asarray(shape.vertices, dtype=np.float64)
        return xa.from_gate(v[:, 0], gate_unit(shape, "x")), ya.from_gate(v[:, 1], gate_unit(shape, "y"))
    if shape.kind == "rectangle" and shape.rect is not None:
        x0, x1, y0, y1 = shape.rect
        xs = _sides(xa, (x0, x1), gate_unit(shape, "x"), robust_range(x))
        ys = _sides(ya, (y0, y1), gate_unit(shape, "y"), robust_range(y))
        return np.array([xs[0], xs[1], xs[1], xs[0]]), np.array([ys[0], ys[0], ys[1], ys[1]])
    return np.empty(0), np.empty(0)


def _sides(axis: Axis, bounds: tuple[float | None, float | None], unit: str,
           data: tuple[float, float]) -> tuple[float, float]:
    lo, hi = bounds
    shown = [axis.from_gate(np.array([v]), unit)[0] if v is not None else None for v in (lo, hi)]
    return (data[0] if shown[0] is None else float(shown[0]), data[1] if shown[1] is None else float(shown[1]))


def _histogram_gate(ax: Axes, xa: Axis, x: np.ndarray, shape: Shape, pop: Population, pct: float) -> None:
    bounds = np.empty(0)
    if shape.rect is not None:
        lo, hi = shape.rect[0], shape.rect[1]
        bounds = xa.from_gate(np.array([v for v in (lo, hi) if v is not None]), gate_unit(shape, "x"))
    xr = robust_range(x, bounds)
    counts, edges = np.histogram(x, bins=BINS, range=xr)
    ax.fill_between(edges[:-1], counts, step="post", color="tab:blue", alpha=0.6, lw=0)
    for b in bounds:
        ax.axvline(float(b), color="black", lw=1.2)
    left = float(bounds.min()) if bounds.size else xr[0]
    _gate_label(ax, pop, pct, float(np.clip(left, *xr)), float(counts.max() if counts.size else 1) * 0.98)
    ax.set_xlim(xr)
    ax.set_ylim(0, float(counts.max() if counts.size else 1) * 1.05)
    xa.decorate(ax, "x", *xr)
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.set_xlabel(xa.label(), fontsize=8)
    ax.set_ylabel("events", fontsize=8)
    ax.set_title(f"{pop.parent} → {pop.name}: {pop.count:,} ({pct:.1f}%)", fontsize=8)


def _overview_population(gating: Gating) -> Population | None:
    for name in ("singlets", "cells"):
        pop = gating.get(name)
        if pop is not None and pop.count:
            return pop
    return None


def _fluorescence_panel(ax: Axes, sample: Sample, gating: Gating, scale: Scale, limit: int) -> None:
    channels = [ch for ch in sample.channels if ch.kind == "fluorescence"]
    pop = _overview_population(gating)
    idx = _sample_index(pop, sample.n_events, limit)
    axes = [Axis(ch, scale) for ch in channels]
    values = [a.values(sample, idx) for a in axes]
    xr = robust_range(np.concatenate(values)) if values else (0.0, 1.0)
    for k, (a, v) in enumerate(zip(axes, values, strict=True)):
        counts, edges = np.histogram(v, bins=96, range=xr)
        ax.step(edges[:-1], counts, where="post", lw=1.1, color=_HIST_COLOURS[k % len(_HIST_COLOURS)],
                label=a.ch.label or a.ch.name)
    if axes:
        axes[0].decorate(ax, "x", *xr)
        ax.set_xlim(xr)
        ax.legend(fontsize=6, frameon=False, loc="upper right", ncol=1 + len(axes) // 7)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.set_xlabel(f"fluorescence [{scale.kind}]" if axes and axes[0].scaled else "fluorescence", fontsize=8)
    ax.set_title(f"fluorescence of {pop.name if pop else 'all events'}", fontsize=8)


def _ungated_panel(ax: Axes, sample: Sample, scale: Scale, limit: int) -> bool:
    """A density plot of FSC vs SSC, or else of the first two channels: never a blank image."""
    usable = [ch for ch in sample.channels if ch.kind != "time"]
    scatter = [ch for ch in usable if ch.kind == "scatter"]
    pair = (scatter[:2] if len(scatter) >= 2 else usable[:2])
    if len(pair) < 2 or sample.n_events == 0:
        return False
    idx = _sample_index(None, sample.n_events, limit)
    xa, ya = Axis(pair[0], scale), Axis(pair[1], scale)
    x, y = xa.values(sample, idx), ya.values(sample, idx)
    xr, yr = robust_range(x), robust_range(y)
    _density(ax, x, y, xr, yr)
    _frame_2d(ax, xa, ya, xr, yr, f"all events: {sample.n_events:,}")
    return True


class Plotter:
    """Draws the per-file PNGs on one reused figure."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(PANEL_INCHES * 3, PANEL_INCHES), dpi=DPI)
        FigureCanvasAgg(self.figure)

    def plot(self, path: Path, sample: Sample, gating: Gating, scale: Scale, max_points: int, title: str) -> None:
        drawable = [p for p in gating.populations if p.shape is not None]
        gates = drawable[:MAX_GATE_PANELS]
        automatic = not drawable or all(p.auto for p in drawable)
        fluorescence = any(ch.kind == "fluorescence" for ch in sample.channels) and sample.n_events > 0
        kinds = ["gate"] * len(gates) or ["ungated"]
        if automatic and fluorescence:
            kinds.append("fluorescence")
        fig = self.figure
        fig.clear()
        try:
            fig.set_size_inches(PANEL_INCHES * len(kinds) + 0.2, PANEL_INCHES + 0.3)
            axes = fig.subplots(1, len(kinds), squeeze=False)[0]
            fig.subplots_adjust(left=0.5 / (PANEL_INCHES * len(kinds)), right=0.98, bottom=0.17, top=0.82,
                                wspace=0.32)
            for ax, kind, pop in zip(axes, kinds, gates + [None] * len(kinds), strict=False):
                ax.tick_params(labelsize=7)
                if kind == "gate" and pop is not None:
                    _gate_panel(ax, sample, gating, scale, pop, max_points)
                elif kind == "fluorescence":
                    _fluorescence_panel(ax, sample, gating, scale, max_points)
                elif not _ungated_panel(ax, sample, scale, max_points):
                    ax.text(0.5, 0.5, f"{sample.n_events:,} events\nnothing to draw", ha="center", va="center",
                            transform=ax.transAxes, fontsize=9)
                    ax.set_axis_off()
            more = len(drawable) - len(gates)
            fig.suptitle(title + (f"  (+{more} more gates in stats.csv)" if more > 0 else ""), fontsize=9)
            fig.savefig(path, dpi=DPI)
        finally:
            fig.clear()


def plot(path: Path, sample: Sample, gating: Gating, scale: Scale, max_points: int, title: str) -> None:
    Plotter().plot(path, sample, gating, scale, max_points, title)
