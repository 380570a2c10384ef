"""The cytometry pipeline end to end: run(ctx) on written files and on real instrument files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flowutils import transforms as fu_transforms

from container.pipelines import InputError, ParameterError, cytometry
from tests.fcs_data import SCATTER_CHANNELS, context, fcsparser_files_or_skip, scatter_events, write_fcs


def run(inp: Path, out: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return cytometry.run(context(inp, out, params))


def read_outputs(out: Path) -> tuple[list[dict[str, str]], dict[str, Any], dict[str, Any]]:
    with (out / "stats.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    qc = json.loads((out / "qc.json").read_text(encoding="utf-8"))["files"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return rows, qc, summary


def row(rows: list[dict[str, str]], file: str, population: str) -> dict[str, str]:
    return next(r for r in rows if r["file"] == file and r["population"] == population)


def test_known_events_give_exact_counts_and_medians(tmp_path: Path) -> None:
    events = scatter_events(20_000, seed=1)
    write_fcs(tmp_path / "in" / "a.fcs", events, SCATTER_CHANNELS)
    f32 = events.astype(np.float32).astype(np.float64)
    fl1, fsc, ssc = f32[:, 3], f32[:, 0], f32[:, 2]
    gates = [
        {"name": "mid", "type": "rectangle", "x": "FL1-A", "scale": "linear", "bounds": {"x": [1000, 3000]}},
        {
            "name": "box",
            "parent": "mid",
            "type": "polygon",
            "x": "FSC-A",
            "y": "SSC-A",
            "vertices": [[50_000, 30_000], [110_000, 30_000], [110_000, 50_000], [50_000, 50_000]],
        },
        {"name": "pos", "type": "rectangle", "x": "FL1-A", "bounds": {"x": [0.6, None]}},
    ]
    summary = run(tmp_path / "in", tmp_path / "out", {"gates": gates})
    assert summary == {
        "files_analysed": 1,
        "files_failed": 0,
        "events": 20_000,
        "populations": ["all", "mid", "box", "pos"],
    }
    rows, qc, _ = read_outputs(tmp_path / "out")
    root = row(rows, "a.fcs", "all")
    assert int(root["events"]) == 20_000 and float(root["pct_of_parent"]) == 100
    for ch, values in (("FL1-A", fl1), ("FSC-A", fsc)):
        p16, med, p84 = np.percentile(values, [15.87, 50, 84.13])
        assert float(root[f"{ch}_median"]) == pytest.approx(med, rel=1e-7)
        assert float(root[f"{ch}_rCV"]) == pytest.approx(100 * 0.5 * (p84 - p16) / med, rel=1e-6)
    assert "Time_median" not in root
    mid = (fl1 >= 1000) & (fl1 < 3000)
    box = mid & (fsc > 50_000) & (fsc < 110_000) & (ssc > 30_000) & (ssc < 50_000)
    assert int(row(rows, "a.fcs", "mid")["events"]) == mid.sum()
    assert int(row(rows, "a.fcs", "box")["events"]) == box.sum()
    assert float(row(rows, "a.fcs", "box")["pct_of_parent"]) == pytest.approx(100 * box.sum() / mid.sum())
    assert float(row(rows, "a.fcs", "box")["SSC-A_median"]) == pytest.approx(np.median(ssc[box]), rel=1e-7)
    box_row = row(rows, "a.fcs", "box")
    assert float(box_row["pct_of_total"]) == pytest.approx(100 * box.sum() / 20_000)
    assert float(box_row["FL1-A_mean"]) == pytest.approx(fl1[box].mean(), rel=1e-8)
    assert float(box_row["FL1-A_geomean"]) == pytest.approx(np.exp(np.log(fl1[box]).mean()), rel=1e-8)
    assert float(box_row["FL1-A_CV"]) == pytest.approx(100 * fl1[box].std(ddof=1) / fl1[box].mean(), rel=1e-7)
    pos = fu_transforms.logicle(fl1.copy(), None, t=262143, m=4.5, w=0.5, a=0) >= 0.6
    assert abs(int(row(rows, "a.fcs", "pos")["events"]) - pos.sum()) <= 1  # float32 rounding at the edge
    assert qc["a.fcs"]["status"] == "ok" and (tmp_path / "out" / "a.png").stat().st_size > 1000


def test_automatic_gates_remove_debris_and_doublets(tmp_path: Path) -> None:
    write_fcs(tmp_path / "in" / "s.fcs", scatter_events(50_000, seed=2), SCATTER_CHANNELS)
    run(tmp_path / "in", tmp_path / "out")
    rows, qc, summary = read_outputs(tmp_path / "out")
    cells = int(row(rows, "s.fcs", "cells")["events"])
    singlets = int(row(rows, "s.fcs", "singlets")["events"])
    assert 50_000 * 0.88 < cells < 50_000 * 0.92  # 10% debris out
    assert 50_000 * 0.83 < singlets < 50_000 * 0.86  # and 5% doublets
    assert qc["s.fcs"]["gates"]["cells"]["method"].startswith("density valley")
    assert summary["populations"] == ["all", "cells", "singlets"] and "method" in summary


def test_spillover_is_applied(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    true = rng.lognormal(8, 0.5, (5000, 2))
    events = np.column_stack([rng.normal(8e4, 5e3, 5000), rng.normal(4e4, 5e3, 5000), true @ [[1, 0.3], [0, 1]]])
    meta = {"$SPILLOVER": "2,FL1-A,FL2-A,1,0.3,0,1"}
    write_fcs(tmp_path / "in" / "c.fcs", events, ["FSC-A", "SSC-A", "FL1-A", "FL2-A"], meta)
    run(tmp_path / "in", tmp_path / "out", {"gates": []})
    rows, qc, _ = read_outputs(tmp_path / "out")
    assert qc["c.fcs"]["compensated_channels"] == ["FL1-A", "FL2-A"]
    assert float(row(rows, "c.fcs", "all")["FL2-A_median"]) == pytest.approx(np.median(true[:, 1]), rel=1e-4)


def test_truncated_file_fails_alone_and_non_ascii_keywords_are_fine(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    write_fcs(
        inp / "good.fcs",
        scatter_events(3000),
        SCATTER_CHANNELS,
        {"$SRC": "Milz – Maus µ7", "OPERATOR": "Jürgen Ødegård"},
        labels=["", "", "", "CD4 α", "CD8 β", ""],
    )
    cut = write_fcs(inp / "sub" / "cut.FCS", scatter_events(3000), SCATTER_CHANNELS)
    cut.write_bytes(cut.read_bytes()[:-4000])
    summary = run(inp, tmp_path / "out")
    assert summary["files_analysed"] == 1 and summary["files_failed"] == 1
    rows, qc, summ = read_outputs(tmp_path / "out")
    assert qc["sub/cut.FCS"]["status"] == "failed" and "it was cut short" in qc["sub/cut.FCS"]["error"]
    assert qc["good.fcs"]["status"] == "ok" and {r["file"] for r in rows} == {"good.fcs"}
    assert summ["failed_files"] == {"sub/cut.FCS": qc["sub/cut.FCS"]["error"]}


def test_flags_fire(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    write_fcs(inp / "few.fcs", scatter_events(500), SCATTER_CHANNELS)
    events = scatter_events(10_000, seed=5)
    events[::20, 3] = 262_143  # 5% of FL1-A at the top of its range
    events[:, 0] *= np.linspace(1.0, 1.6, 10_000)  # FSC climbs over the run
    write_fcs(inp / "sat.fcs", events, SCATTER_CHANNELS)
    write_fcs(inp / "bare.fcs", np.random.default_rng(0).lognormal(5, 1, (2000, 2)), ["FL1-A", "FL2-A"])
    run(inp, tmp_path / "out")
    _, qc, _ = read_outputs(tmp_path / "out")
    assert qc["few.fcs"]["flags"]["too_few_events"] is True
    flags = qc["sat.fcs"]["flags"]
    assert flags["too_few_events"] is False and flags["saturated_channels"] == ["FL1-A"]
    assert flags["signal_drift"] is True and qc["sat.fcs"]["drift"]["channel"] == "FSC-A"
    assert qc["few.fcs"]["flags"]["signal_drift"] is False
    assert qc["bare.fcs"]["flags"]["missing_channels"] == ["FSC-A", "SSC-A"]


def test_no_fcs_files_and_nothing_readable_are_pipeline_errors(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="no FCS files"):  # bad input: exit 2, never retried
        run(tmp_path / "in", tmp_path / "out")
    (tmp_path / "in" / "x.fcs").write_bytes(b"FCS3.0  nonsense")
    with pytest.raises(InputError, match=r"x\.fcs: "):
        run(tmp_path / "in", tmp_path / "out")
    assert json.loads((tmp_path / "out" / "qc.json").read_text())["files"]["x.fcs"]["status"] == "failed"


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"transform": "log"}, "transform"),
        ({"cofactor": 0}, "cofactor"),
        ({"min_events": -1}, "min_events"),
        ({"saturation_threshold": 2}, "saturation_threshold"),
        ({"transfrom": "logicle"}, "transfrom"),
        ({"logicle": {"w": 3}}, "logicle.w"),
        ({"gates": {"name": "x"}}, "gates"),
        ({"gates": [{"name": "a", "type": "circle", "x": "FL1-A"}]}, "gates[0].type"),
        ({"gates": [{"name": "a", "type": "rectangle", "x": "FL1-A", "bounds": {"x": [3, 1]}}]}, "gates[0].bounds.x"),
        (
            {"gates": [{"name": "a", "parent": "b", "type": "rectangle", "x": "F", "bounds": {"x": [1, 2]}}]},
            "gates[0].parent",
        ),
        (
            {"gates": [{"name": "p", "type": "polygon", "x": "A", "y": "B", "vertices": [[0, 0], [1, 1]]}]},
            "gates[0].vertices",
        ),
    ],
)
def test_invalid_parameters_name_the_key(tmp_path: Path, params: dict[str, Any], key: str) -> None:
    write_fcs(tmp_path / "in" / "a.fcs", scatter_events(100), SCATTER_CHANNELS)
    with pytest.raises(ParameterError) as caught:
        run(tmp_path / "in", tmp_path / "out", params)
    message = str(caught.value)
    assert message.startswith(key) or repr(key) in message, message


def test_folder_params_json_wins(tmp_path: Path) -> None:
    write_fcs(tmp_path / "in" / "a.fcs", scatter_events(2000), SCATTER_CHANNELS)
    (tmp_path / "in" / "params.json").write_text(json.dumps({"min_events": 5000}))
    run(tmp_path / "in", tmp_path / "out", {"min_events": 10, "transform": "arcsinh"})
    _, qc, summary = read_outputs(tmp_path / "out")
    assert summary["parameters"]["min_events"] == 5000 and summary["parameters"]["transform"] == "arcsinh"
    assert qc["a.fcs"]["flags"]["too_few_events"] is True
    (tmp_path / "in" / "params.json").write_text("{oops")
    with pytest.raises(ParameterError, match=r"params\.json"):
        run(tmp_path / "in", tmp_path / "out")


EXPECTED_FAILED = {
    "corrupted.fcs": "not an FCS file",  # 10 bytes, no header
    "sample_header.fcs": "the file ends inside its DATA segment: it was cut short",  # TEXT only
}


@pytest.mark.slow
def test_real_instrument_files(tmp_path: Path) -> None:
    files = fcsparser_files_or_skip()
    summary = run(files[0].parents[2], tmp_path / "out")
    rows, qc, _ = read_outputs(tmp_path / "out")
    failed = {Path(k).name: v["error"] for k, v in qc.items() if v["status"] == "failed"}
    assert set(failed) == set(EXPECTED_FAILED)
    for name, text in EXPECTED_FAILED.items():
        assert text in failed[name]
    assert summary["files_analysed"] == len(files) - 2 == 14  # blank HEADER offsets read from TEXT
    with (tmp_path / "out" / "stats.csv").open(newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0][:6] == ["file", "population", "parent", "events", "pct_of_parent", "pct_of_total"]
    stat_columns = table[0][6:]
    assert len(stat_columns) % 5 == 0
    for k in range(0, len(stat_columns), 5):
        channel = stat_columns[k].removesuffix("_median")
        assert stat_columns[k : k + 5] == [f"{channel}_{s}" for s in ("median", "mean", "geomean", "CV", "rCV")]
    assert all(len(r) == len(table[0]) for r in table)
    analysed = {k: v for k, v in qc.items() if v["status"] == "ok"}
    for name, entry in analysed.items():
        assert int(row(rows, name, "all")["events"]) == entry["events"] > 0
        assert (tmp_path / "out" / entry["plot"]).is_file()
    for r in rows:
        assert 0 <= float(r["pct_of_parent"]) <= 100
    by_name = {Path(k).name: v for k, v in analysed.items()}
    assert "first was analysed" in " ".join(by_name["Guava Muse.fcs"]["notes"])
    assert by_name["facs_diva_test.fcs"]["compensated_channels"]  # $SPILL in a FACSDiva file
    assert "off by one" in " ".join(by_name["SG_2014-09-26_Duplicate_Names.fcs"]["notes"])
