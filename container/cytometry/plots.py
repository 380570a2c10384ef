"""One small PNG per file: the first two gates, each over a subsample of its parent's events.

One Figure on an Agg canvas is reused for every file (no pyplot figure registry, no per-file
figure garbage waiting for the cyclic collector), with a fixed layout instead of tight_layout;
the points are drawn rasterized.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon as PolygonPatch

from container.cytometry import units
from container.cytometry.fcs import Channel, Sample
from container.cytometry.gating import Gating, Population, Shape
from container.cytometry.transforms import Scale


def _sample_index(pop: Population | None, n: int, limit: int) -> np.ndarray:
    idx = np.arange(n) if pop is None or pop.mask is None else np.flatnonzero(pop.mask)
    return idx[:: max(1, math.ceil(idx.size / limit))]


def _coords(sample: Sample, scale: Scale, ch: Channel, unit: str, idx: np.ndarray) -> np.ndarray:
    values = np.asarray(units.to_axis(sample.events[ch.index][idx], ch, unit, scale))
    return np.where(np.isfinite(values), values, np.nan)  # log10 of values <= 0 is not drawn


def _draw(ax: Axes, sample: Sample, gating: Gating, scale: Scale, pop: Population, limit: int) -> None:
    shape = pop.shape
    assert shape is not None
    parent = gating.get(pop.parent)
    idx = _sample_index(parent, sample.n_events, limit)
    inside = pop.mask[idx] if pop.mask is not None else np.ones(idx.size, dtype=bool)
    x = _coords(sample, scale, shape.x, shape.x_unit, idx)
    y = (
        _coords(sample, scale, shape.y, shape.y_unit or "linear", idx)
        if shape.y is not None
        else np.random.default_rng(0).uniform(0, 1, idx.size)
    )
    ax.plot(x[~inside], y[~inside], ",", color="0.6", rasterized=True)
    ax.plot(x[inside], y[inside], ",", color="tab:blue", rasterized=True)
    _outline(ax, shape, x, y)
    ax.set_xlabel(units.label(shape.x, shape.x_unit, scale), fontsize=8)
    ax.set_ylabel(units.label(shape.y, shape.y_unit or "linear", scale) if shape.y else "(jitter)", fontsize=8)
    parent_count = parent.count if parent else sample.n_events
    pct = 100.0 * pop.count / parent_count if parent_count else 0.0
    ax.set_title(f"{pop.name}: {pop.count:,} ({pct:.1f}% of {pop.parent})", fontsize=9)
    ax.tick_params(labelsize=7)


def _outline(ax: Axes, shape: Shape, x: np.ndarray, y: np.ndarray) -> None:
    kw = {"color": "tab:red", "lw": 1.2}
    if shape.kind == "band" and shape.band is not None and x.size:
        xs = np.array([0.0, float(np.percentile(x, 99.9))])
        for k in shape.band:
            ax.plot(xs, k * xs, **kw)
    elif shape.kind == "polygon" and shape.vertices is not None:
        ax.add_patch(PolygonPatch(np.asarray(shape.vertices), closed=True, fill=False, **kw))
    elif shape.kind == "rectangle" and shape.rect is not None:
        x0, x1, y0, y1 = shape.rect
        fx, fy = x[np.isfinite(x)], y[np.isfinite(y)]
        lox, hix = (float(fx.min()), float(fx.max())) if fx.size else (0.0, 1.0)
        loy, hiy = (float(fy.min()), float(fy.max())) if fy.size else (0.0, 1.0)
        x0, x1 = lox if x0 is None else x0, hix if x1 is None else x1
        y0, y1 = loy if y0 is None else y0, hiy if y1 is None else y1
        if shape.y is None:
            y0, y1 = 0.0, 1.0
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], **kw)


class Plotter:
    """Draws the per-file PNGs on one reused figure."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(8, 3.4), dpi=80)
        FigureCanvasAgg(self.figure)

    def plot(self, path: Path, sample: Sample, gating: Gating, scale: Scale, max_points: int, title: str) -> None:
        drawable = [p for p in gating.populations if p.shape is not None]
        user = [p for p in drawable if not p.auto]
        panels = (user or drawable)[:2]
        fig = self.figure
        fig.clear()
        try:
            axes = fig.subplots(1, 2)
            fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.84, wspace=0.3)
            for ax, pop in zip(axes, panels, strict=False):
                _draw(ax, sample, gating, scale, pop, max_points // 2)
            for ax in axes[len(panels) :]:
                ax.text(0.5, 0.5, "no gate to show", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
            fig.suptitle(title, fontsize=9)
            fig.savefig(path, dpi=80)
        finally:
            fig.clear()


def plot(path: Path, sample: Sample, gating: Gating, scale: Scale, max_points: int, title: str) -> None:
    Plotter().plot(path, sample, gating, scale, max_points, title)
