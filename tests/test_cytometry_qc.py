"""QC verdicts per file on purpose-built FCS files: each defect found, named, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container.cytometry import verdict
from container.pipelines import cytometry
from tests.fcs_data import SCATTER_CHANNELS, context, scatter_events, write_fcs

N = 40_000


def analyse(tmp_path: Path, files: dict[str, np.ndarray], params: dict[str, Any] | None = None,
            meta: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    for name, events in files.items():
        write_fcs(tmp_path / "in" / name, events, SCATTER_CHANNELS, (meta or {}).get(name))
    cytometry.run(context(tmp_path / "in", tmp_path / "out", params))
    return json.loads((tmp_path / "out" / "qc.json").read_text())["files"]


def with_time(events: np.ndarray, t: np.ndarray) -> np.ndarray:
    events = events.copy()
    events[:, 5] = np.sort(t)
    return events


def clean(seed: int = 1) -> np.ndarray:
    return with_time(scatter_events(N, seed=seed), np.linspace(0, 100, N))


def test_a_clean_file_passes_with_no_reason(tmp_path: Path) -> None:
    qc = analyse(tmp_path, {"ok.fcs": clean()})["ok.fcs"]
    assert qc["verdict"] == "pass", qc["reasons"]
    assert qc["reasons"] == [] and qc["empty_gates"] == [] and qc["drifting_channels"] == []
    assert qc["flow_rate"]["gap"] is False and qc["flow_rate"]["burst"] is False and qc["flow_rate"]["clog"] is False
    assert qc["populations"]["singlets"]["parent"] == "cells" and 85 < qc["populations"]["cells"]["pct_of_parent"] < 95


def test_a_30_percent_time_gap_is_a_warning(tmp_path: Path) -> None:
    t = np.concatenate([np.linspace(0, 35, N // 2), np.linspace(65, 100, N - N // 2)])  # 30 s of 100 with nothing
    qc = analyse(tmp_path, {"gap.fcs": with_time(scatter_events(N, seed=2), t)})["gap.fcs"]
    assert qc["verdict"] == "warn"
    assert qc["flow_rate"]["largest_gap_fraction"] == pytest.approx(0.30, abs=0.01)
    assert qc["reasons"] == ["time gap (30% of the acquisition)"]


def test_10000_events_in_one_second_are_a_burst(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    t = np.concatenate([rng.uniform(0, 100, N - 10_000), rng.uniform(50, 51, 10_000)])
    qc = analyse(tmp_path, {"burst.fcs": with_time(scatter_events(N, seed=3), t)})["burst.fcs"]
    assert qc["verdict"] == "warn" and qc["flow_rate"]["burst"] is True
    assert 49 <= qc["flow_rate"]["peak_at"] <= 52
    assert any(r.startswith("burst (") for r in qc["reasons"]), qc["reasons"]


def test_a_clog_slows_the_flow(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    t = np.concatenate([rng.uniform(0, 70, N - 300), rng.uniform(70, 100, 300)])  # the last 30 s at 1/30 the rate
    qc = analyse(tmp_path, {"clog.fcs": with_time(scatter_events(N, seed=4), t)})["clog.fcs"]
    assert qc["flow_rate"]["clog"] is True and qc["verdict"] == "warn"
    assert any(r.startswith("clog (") for r in qc["reasons"]), qc["reasons"]


def test_a_steady_37_percent_fsc_drift_is_flagged(tmp_path: Path) -> None:
    events = clean(5)
    events[:, 0] *= np.linspace(1.0, 1.37, N)  # FSC-A climbs 37 % from first to last event
    qc = analyse(tmp_path, {"drift.fcs": events})["drift.fcs"]
    assert qc["drifting_channels"] == ["FSC-A"], qc["channel_drift"]
    assert qc["flags"]["signal_drift"] is True
    assert qc["verdict"] == "warn" and qc["reasons"][0].startswith("FSC-A drift (")


def test_drift_on_a_fluorescence_channel_is_flagged(tmp_path: Path) -> None:
    events = clean(6)
    events[:, 4] *= np.linspace(1.0, 2.0, N)  # FL2-A doubles
    qc = analyse(tmp_path, {"fl.fcs": events})["fl.fcs"]
    assert qc["drifting_channels"] == ["FL2-A"], qc["channel_drift"]


def test_saturation_and_too_few_events(tmp_path: Path) -> None:
    sat = clean(7)
    sat[::20, 3] = 262_143
    qc = analyse(tmp_path, {"sat.fcs": sat, "few.fcs": scatter_events(500, seed=8)})
    assert qc["sat.fcs"]["verdict"] == "warn" and qc["sat.fcs"]["reasons"] == ["FL1-A saturated (5.0% at the top)"]
    assert qc["few.fcs"]["verdict"] == "fail" and qc["few.fcs"]["reasons"][0] == "too few events (500)"


def test_a_gate_that_holds_no_events_and_an_unreadable_file(tmp_path: Path) -> None:
    # inside the data on each axis, but no event has both: small FSC (debris) and large SSC
    gates = [{"name": "nothing", "type": "rectangle", "x": "FSC-A", "y": "SSC-A",
              "bounds": {"x": [0, 20_000], "y": [60_000, 80_000]}, "scale": "linear"}]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.fcs").write_bytes(b"FCS3.1    nonsense")
    qc = analyse(tmp_path, {"ok.fcs": clean(9)}, {"gates": gates})
    assert qc["ok.fcs"]["empty_gates"] == ["nothing"]
    assert qc["ok.fcs"]["reasons"] == ["gate nothing holds no events"]
    assert qc["broken.fcs"]["verdict"] == "fail" and qc["broken.fcs"]["reasons"][0].startswith("unreadable: ")


def test_the_well_comes_from_wellid(tmp_path: Path) -> None:
    qc = analyse(tmp_path, {"tube.fcs": clean(10)}, meta={"tube.fcs": {"$WELLID": "C07"}})
    assert qc["tube.fcs"]["well"] == "C07"


def test_verdict_of_an_older_qc_entry_uses_its_flags() -> None:
    old = {"status": "ok", "events": 9000, "flags": {"too_few_events": False, "saturated_channels": [],
           "signal_drift": True, "missing_channels": ["SSC-A"]},
           "drift": {"channel": "FSC-A", "max_relative_change": 0.31}}
    assert verdict.judge(old) == {"verdict": "warn", "reasons": ["FSC-A drift (31%)", "missing channel SSC-A"]}
    assert verdict.worst(["pass", "fail", "warn"]) == "fail"


def test_gates_the_gating_flags_are_warnings() -> None:
    entry = {"status": "ok", "events": 9000, "flags": {"empty_gates": ["CD4+", "far"],
                                                       "unreliable_gates": ["singlets"], "gates_outside_data": ["far"]}}
    assert verdict.judge(entry) == {"verdict": "warn", "reasons": [
        "gate CD4+ holds no events", "gate singlets unreliable", "gate far lies outside the data"]}
