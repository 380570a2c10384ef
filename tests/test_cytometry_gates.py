"""Gates from params: half-open bounds, units people read, QC warnings for gates that miss the data."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flowutils import transforms as fu_transforms

from container.cytometry import analysis
from container.cytometry import params as params_mod
from container.pipelines import ParameterError, cytometry
from tests.fcs_data import (
    SCATTER_CHANNELS,
    STAINED_CHANNELS,
    context,
    scatter_events,
    stained_events,
    write_fcs,
)

README = Path(__file__).resolve().parents[1] / "container" / "README.md"


def analyse(path: Path, raw: dict[str, Any]) -> analysis.FileResult:
    return analysis.analyse(path, path.name, params_mod.parse(raw))


def counts(result: analysis.FileResult) -> dict[str, int]:
    return {p.name: p.count for p in result.gating.populations}


def f32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).astype(np.float64)


def test_rectangle_and_range_bounds_are_half_open(tmp_path: Path) -> None:
    # GatingML 2.0 (and FlowKit): min <= x < max. Events sit exactly on both edges.
    events = scatter_events(1000, seed=3)
    events[:5, 0] = [999, 1000, 2000, 3000, 3001]
    events[:5, 2] = [10, 10, 10, 10, 10]
    events[5:, 0] = 50_000
    path = write_fcs(tmp_path / "edges.fcs", events, SCATTER_CHANNELS)
    box = {"x": "FSC-A", "y": "SSC-A", "type": "rectangle", "scale": "linear"}
    gates = [
        {"name": "range", "type": "rectangle", "x": "FSC-A", "scale": "linear", "bounds": {"x": [1000, 3000]}},
        {"name": "rect", **box, "bounds": {"x": [1000, 3000], "y": [9, 10]}},
        {"name": "rect_in", **box, "bounds": {"x": [None, 3000], "y": [10, None]}},
    ]
    found = counts(analyse(path, {"gates": gates}))
    assert found["range"] == 2  # 1000 and 2000; 3000 is outside
    assert found["rect"] == 0  # SSC 10 is the upper bound: outside
    assert found["rect_in"] == 3  # 999, 1000, 2000; the lower bound 10 is inside


def test_linear_and_decade_bounds_select_data_units(tmp_path: Path) -> None:
    events = stained_events(20_000, seed=4)
    path = write_fcs(tmp_path / "s.fcs", events, STAINED_CHANNELS)
    fitc, pe, apc = f32(events[:, 3]), f32(events[:, 4]), f32(events[:, 5])
    gates = [
        {"name": "lin", "type": "rectangle", "x": "FITC-A", "scale": "linear", "bounds": {"x": [1000, None]}},
        {"name": "dec", "type": "rectangle", "x": "FITC-A", "scale": "decades", "bounds": {"x": [3, None]}},
        {
            "name": "mixed",
            "type": "rectangle",
            "x": "FITC-A",
            "y": "PE-A",
            "scale": {"x": "linear", "y": "decades"},
            "bounds": {"x": [None, 1000], "y": [3, 4]},
        },
        {
            "name": "tri",
            "type": "polygon",
            "x": "PE-A",
            "y": "APC-A",
            "scale": "decades",
            "vertices": [[3, 1], [5, 1], [5, 5]],
        },
    ]
    result = analyse(path, {"gates": gates})
    found = counts(result)
    assert found["lin"] == found["dec"] == np.count_nonzero(fitc >= 1000) > 5000
    assert found["mixed"] == np.count_nonzero((fitc < 1000) & (pe >= 1000) & (pe < 10_000)) > 3000
    # the triangle in log10 space: above y = x - 4 ... below the line from (3,1) to (5,5): y <= 2x - 5
    lx, ly = np.log10(np.where(pe > 0, pe, np.nan)), np.log10(np.where(apc > 0, apc, np.nan))
    inside = (lx > 3) & (lx < 5) & (ly > 1) & (ly < 2 * lx - 5)
    assert abs(found["tri"] - np.count_nonzero(inside)) <= 2 and found["tri"] > 100
    flags = result.qc["flags"]
    assert flags["empty_gates"] == [] and flags["gates_outside_data"] == []
    assert not any("names no scale" in n for n in result.qc["notes"])


def test_gates_without_a_scale_keep_the_old_meaning_and_say_so(tmp_path: Path) -> None:
    events = stained_events(10_000, seed=5)
    path = write_fcs(tmp_path / "s.fcs", events, STAINED_CHANNELS)
    old = {"name": "pos", "type": "rectangle", "x": "FITC-A", "y": "SSC-A"}
    old["bounds"] = {"x": [0.6, None], "y": [None, 5e4]}
    result = analyse(path, {"gates": [old]})
    fitc, ssc = f32(events[:, 3]), f32(events[:, 2])
    logicle = fu_transforms.logicle(fitc.copy(), None, t=262143, m=4.5, w=0.5, a=0)
    assert abs(counts(result)["pos"] - np.count_nonzero((logicle >= 0.6) & (ssc < 5e4))) <= 1
    notes = " ".join(result.qc["notes"])
    assert "gate 'pos' names no scale: its FITC-A coordinates were read in the logicle unit" in notes
    assert "SSC-A coordinates" not in notes  # scatter was linear then too


def test_gate_outside_the_data_and_empty_gates_are_flagged(tmp_path: Path) -> None:
    events = stained_events(10_000, seed=6)
    path = write_fcs(tmp_path / "s.fcs", events, STAINED_CHANNELS)
    gates = [
        # the old README trap: 2.1 in logicle units is 2.3e10 in data units, far above any event
        {"name": "trap", "type": "rectangle", "x": "FITC-A", "scale": "transformed", "bounds": {"x": [2.1, None]}},
        {"name": "gap", "type": "rectangle", "x": "FITC-A", "scale": "linear", "bounds": {"x": [1e6, 2e6]}},
        {"name": "hole", "type": "rectangle", "x": "SSC-A", "scale": "linear", "bounds": {"x": [1.0e5, 1.5e5]}},
        {"name": "fine", "type": "rectangle", "x": "FITC-A", "scale": "linear", "bounds": {"x": [1000, None]}},
    ]
    ssc = f32(events[:, 2])
    assert ssc.max() < 1.0e5  # "hole" lies within no event but, below, within the range of data
    events[0, 2] = 2.0e5
    write_fcs(path, events, STAINED_CHANNELS)
    result = analyse(path, {"gates": gates})
    flags = result.qc["flags"]
    assert flags["gates_outside_data"] == ["trap", "gap"]
    assert flags["empty_gates"] == ["trap", "gap", "hole"]
    notes = " ".join(result.qc["notes"])
    assert "gate 'trap' lies outside the data: on FITC-A it spans 2.3" in notes
    assert "gate 'hole' holds 0 events" in notes


def test_the_readme_example_selects_events(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"An example `params\.json`.*?```json\n(.*?)```", text, re.S)
    assert block is not None
    example = json.loads(block.group(1))
    write_fcs(tmp_path / "in" / "demo.fcs", stained_events(30_000, seed=7), STAINED_CHANNELS)
    cytometry.run(context(tmp_path / "in", tmp_path / "out", example))
    qc = json.loads((tmp_path / "out" / "qc.json").read_text())["files"]["demo.fcs"]
    assert qc["status"] == "ok"
    assert qc["flags"]["empty_gates"] == [] and qc["flags"]["gates_outside_data"] == []
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["populations"] == ["all", "cells", "singlets", "lymphocytes", "CD4+", "CD8+", "APC bright"]
    with (tmp_path / "out" / "stats.csv").open(newline="") as fh:
        rows = {r["population"]: r for r in csv.DictReader(fh)}
    pct = {name: float(rows[name]["pct_of_parent"]) for name in ("lymphocytes", "CD4+", "CD8+", "APC bright")}
    assert pct["lymphocytes"] > 80
    assert 40 < pct["CD4+"] < 50 and 20 < pct["CD8+"] < 30 and 8 < pct["APC bright"] < 12


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"scale": "decades", "bounds": {"x": [2.1e4, None]}}, r"bounds\.x: 21000 is not a number of decades"),
        ({"scale": "logicle", "bounds": {"x": [1, None]}}, r"gates\[0\]\.scale: expected one of linear, decades"),
        ({"scale": {"x": "linear", "y": "decades"}, "bounds": {"x": [1, None]}}, r"gates\[0\]\.scale: expected"),
    ],
)
def test_bad_scales_name_the_key(gate: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        params_mod.parse({"gates": [{"name": "g", "type": "rectangle", "x": "FITC-A", **gate}]})


def test_parameters_round_trip_with_scales() -> None:
    gate = {"name": "g", "type": "rectangle", "x": "A", "y": "B", "scale": {"x": "linear", "y": "decades"}}
    params = params_mod.parse({"gates": [{**gate, "bounds": {"x": [1, 2], "y": [3, None]}}]})
    written = params.to_json()["gates"][0]
    assert written["scale"] == {"x": "linear", "y": "decades"} and "scale_named" not in written
    assert params_mod.parse({"gates": [written]}) == params
    polygon = {"name": "p", "type": "polygon", "x": "A", "y": "B", "vertices": [[0, 0], [1, 0], [1, 1]]}
    legacy = params_mod.parse({"gates": [polygon]})
    again = params_mod.parse(legacy.to_json())
    assert again.gates[0].vertices == legacy.gates[0].vertices and again.gates[0].scale == "transformed"
    assert params.gates[0].x_unit == "linear" and params.gates[0].y_unit == "decades"
