"""Plots a cytometrist reads: decade labels in data units, ranges from the data, every gate drawn,
a fluorescence overview in automatic mode, never a blank image."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from bot.demo import CYTOMETRY_CHANNELS, CYTOMETRY_LABELS, SPILLOVER, cytometry_events
from container.cytometry import analysis, plots
from container.cytometry import params as params_mod
from container.cytometry.fcs import Channel
from tests.fcs_data import write_fcs

PANEL_PX = int(plots.PANEL_INCHES * plots.DPI)


def draw(tmp_path: Path, events: np.ndarray, channels: list[str], raw: dict | None = None,
         labels: list[str] | None = None) -> Image.Image:
    path = write_fcs(tmp_path / "a.fcs", events, channels, {"$SPILLOVER": SPILLOVER} if labels else None, labels)
    params = params_mod.parse(raw or {})
    result = analysis.analyse(path, "a.fcs", params)
    plots.Plotter().plot(tmp_path / "a.png", result.sample, result.gating, analysis.scale_of(params),
                         params.max_plot_points, "a.fcs")
    return Image.open(tmp_path / "a.png").convert("RGB")


def panels(image: Image.Image) -> int:
    return round((image.size[0] - 0.2 * plots.DPI) / PANEL_PX)


@pytest.mark.parametrize("kind", ["logicle", "arcsinh"])
def test_fluorescence_axes_are_labelled_at_decades_in_data_units(kind: str) -> None:
    params = params_mod.parse({"transform": kind})
    scale = analysis.scale_of(params)
    ch = Channel(3, "FL1-A", "CD4", "fluorescence", 262144.0, 262143.0)
    axis = plots.Axis(ch, scale)
    shown = np.asarray(scale.forward(np.array([-300.0, 50.0, 2e3, 1e5]), ch))
    lo, hi = float(shown.min()), float(shown.max())
    ax = Figure().subplots()
    axis.decorate(ax, "x", lo, hi)
    ax.set_xlim(lo, hi)
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert {"0", "10³", "10⁴", "10⁵"} <= set(labels) or {"0", "10³", "10⁴"} <= set(labels), labels
    assert all(label == "0" or label.lstrip("-").startswith("10") for label in labels), labels
    positions = sorted(ax.get_xticks())
    assert all(b - a >= 0.09 * (hi - lo) - 1e-9 for a, b in itertools.pairwise(positions))
    assert axis.label() == f"CD4 (FL1-A) [{kind}]"


def test_ranges_come_from_the_data_not_the_instruments_range() -> None:
    rng = np.random.default_rng(0)
    fsc = rng.normal(60_000, 5_000, 10_000)
    lo, hi = plots.robust_range(fsc)
    assert 35_000 < lo < 50_000 and 70_000 < hi < 85_000  # $PnR would say 0..262,144
    assert plots.robust_range(fsc, np.array([0.0, 200_000.0])) == pytest.approx((-10_000, 210_000))


def test_automatic_mode_draws_both_gates_and_a_fluorescence_overview(tmp_path: Path) -> None:
    image = draw(tmp_path, cytometry_events(20_000, 1), CYTOMETRY_CHANNELS, labels=CYTOMETRY_LABELS)
    assert panels(image) == 3  # cells, singlets, fluorescence of the singlets
    assert len(image.getcolors(1 << 16) or []) > 200  # a density, not a handful of dot colours


def test_every_user_gate_is_drawn(tmp_path: Path) -> None:
    gates = [
        {"name": "CD4+", "type": "rectangle", "x": "FL1-A", "bounds": {"x": [0.55, None]}},
        {"name": "CD8+", "parent": "CD4+", "type": "rectangle", "x": "FL2-A", "bounds": {"x": [0.5, None]}},
        {"name": "big", "type": "rectangle", "x": "FSC-A", "y": "SSC-A",
         "bounds": {"x": [50_000, None], "y": [20_000, 80_000]}},
        {"name": "T", "parent": "CD4+", "type": "polygon", "x": "FL1-A", "y": "FL2-A",
         "vertices": [[0.5, 0.1], [0.9, 0.1], [0.9, 0.5], [0.5, 0.5]]},
    ]
    image = draw(tmp_path, cytometry_events(20_000, 2), CYTOMETRY_CHANNELS, {"gates": gates}, CYTOMETRY_LABELS)
    assert panels(image) == 4


def test_a_file_without_scatter_gets_a_density_and_histograms_not_a_blank(tmp_path: Path) -> None:
    events = np.random.default_rng(0).lognormal(7, 1, (5_000, 2))
    image = draw(tmp_path, events, ["FL1-A", "FL2-A"])
    assert panels(image) == 2
    assert len(image.getcolors(1 << 16) or []) > 100


def test_gate_coordinates_in_any_unit_land_on_the_display_scale() -> None:
    from types import SimpleNamespace

    scale = analysis.scale_of(params_mod.parse({}))
    fl = plots.Axis(Channel(3, "FL1-A", "", "fluorescence", 262144.0, 262143.0), scale)
    fsc = plots.Axis(Channel(0, "FSC-A", "", "scatter", 262144.0, 262143.0), scale)
    shown = float(np.asarray(scale.forward(np.array([1000.0]), fl.ch))[0])
    assert fl.from_gate(np.array([3.0]), "decades")[0] == pytest.approx(shown)
    assert fl.from_gate(np.array([1000.0]), "linear")[0] == pytest.approx(shown)
    assert fl.from_gate(np.array([0.6]), "transformed")[0] == 0.6
    assert fsc.from_gate(np.array([5e4]), "transformed")[0] == 5e4
    assert fsc.from_gate(np.array([4.0]), "decades")[0] == 1e4
    assert plots.gate_unit(SimpleNamespace(x_unit="decades"), "x") == "decades"
    assert plots.gate_unit(SimpleNamespace(x_scaled=True), "x") == "transformed"
    assert plots.gate_unit(SimpleNamespace(y_scaled=False), "y") == "linear"
