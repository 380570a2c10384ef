"""The automatic cells and singlets gates on real instrument files and on purpose-built ones.

The fcsparser files include buffer-only (PBS) runs from MACSQuant, Fortessa and LSR-II: noise
around the trigger threshold, with about half of FSC-A at or below 0 and no cells at all. On
those the gates must not pretend: the debris cut removes what it says (1%), and no singlet band
is drawn through noise. On real samples (FACSDiva, SG) they must gate as a cytometrist would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from container.cytometry import analysis
from container.cytometry import params as params_mod
from tests.fcs_data import SCATTER_CHANNELS, fcsparser_files_or_skip, scatter_events, write_fcs

PBS_FILES = [
    "EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs",  # MACSQuant
    "FCS3.0_Custom_Compatible.fcs",  # MACSQuant
    "EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs",  # MACSQuant
    "FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs",  # BD Fortessa, buffer only
]


@pytest.fixture(scope="module")
def real() -> dict[str, Path]:
    return {p.name: p for p in fcsparser_files_or_skip()}


def run(path: Path, raw: dict | None = None) -> analysis.FileResult:
    return analysis.analyse(path, path.name, params_mod.parse(raw or {}))


def counts(result: analysis.FileResult) -> dict[str, int]:
    return {p.name: p.count for p in result.gating.populations}


@pytest.mark.parametrize("name", PBS_FILES)
def test_buffer_only_files_are_not_gated_as_if_they_held_cells(real: dict[str, Path], name: str) -> None:
    result = run(real[name])
    n = result.sample.n_events
    cells = result.qc["gates"]["cells"]
    removed = cells["removed"]
    # no debris population: the fallback cut removes 1% of events by FSC, as it says, and not
    # every event at or below 0 (35-48% of these files)
    assert cells["method"] == "1st percentile of FSC (no debris population found)"
    assert removed["fsc_below_cut"] == pytest.approx(0.01 * n, abs=2)
    assert counts(result)["cells"] >= 0.985 * n
    note = next(x for x in result.qc["notes"] if "<= 0 (noise at the trigger threshold" in x)
    share = float(note.split("(")[1].split("%")[0])
    assert 30 < share < 50 and f"{removed['fsc_at_or_below_0']:,} of them lie below the debris cut" in note
    # a singlet band through noise is flagged, not used
    assert "singlets" not in counts(result)
    assert result.qc["flags"]["unreliable_gates"] == ["singlets"]
    assert result.qc["gates"]["singlets"]["applied"] is False
    assert any(x.startswith("singlets gate not applied: the FSC-H/FSC-A ratio band") for x in result.qc["notes"])


def test_facs_diva_singlets_from_fsc_width(real: dict[str, Path]) -> None:
    # BD FACSDiva export with FSC-A and FSC-W but no FSC-H
    result = run(real["facs_diva_test.fcs"])
    found = counts(result)
    singlets = result.qc["gates"]["singlets"]
    assert singlets["fsc_width"] == "FSC-W" and singlets["applied"] is True
    lo, hi = singlets["width_band"]
    width = result.sample.events[result.sample.find("FSC-W").index]
    median = float(np.median(width[result.gating.get("cells").mask]))
    assert 0 < lo < median < hi < 1.5 * median  # a doublet (twice the width) is outside
    assert 0.85 < found["singlets"] / found["cells"] < 0.99
    # a fifth of the events sit at the top of SSC-A: removed from cells, and said so
    removed = result.qc["gates"]["cells"]["removed"]
    assert removed["ssc_saturated"] == pytest.approx(0.223 * result.sample.n_events, rel=0.02)
    assert "SSC-A" in result.qc["flags"]["saturated_channels"]
    assert result.qc["flags"]["unreliable_gates"] == []


def test_area_height_ratio_on_a_clean_sample(real: dict[str, Path]) -> None:
    result = run(real["SG_2014-09-26_Duplicate_Names.fcs"])
    found = counts(result)
    lo, hi = result.qc["gates"]["singlets"]["ratio_band"]
    assert 0.5 < lo < hi < 1.0 and hi / lo < 1.3  # a tight band, well above half its centre
    assert 0.95 < found["singlets"] / found["cells"] < 0.999
    assert found["cells"] > 0.98 * result.sample.n_events


def test_singlets_from_width_remove_wide_doublets(tmp_path: Path) -> None:
    events = scatter_events(40_000, seed=9, doublets=0.0)
    rng = np.random.default_rng(9)
    doublet = rng.random(events.shape[0]) < 0.08
    width = rng.normal(60_000, 2_000, events.shape[0])
    width[doublet] *= 1.8  # two cells in a row: a longer pulse
    data = np.column_stack([events[:, 0], width, events[:, 2:]])
    channels = ["FSC-A", "FSC-W", *SCATTER_CHANNELS[2:]]
    result = run(write_fcs(tmp_path / "w.fcs", data, channels))
    found = counts(result)
    cells = result.gating.get("cells").mask
    singlets = result.gating.get("singlets").mask
    assert not np.any(singlets & doublet)  # every doublet out
    assert np.count_nonzero(cells & ~doublet & ~singlets) < 0.01 * found["cells"]  # few singlets lost
    assert result.qc["gates"]["singlets"]["fsc_width"] == "FSC-W"


def test_debris_valley_removes_non_positive_fsc_and_says_so(tmp_path: Path) -> None:
    events = scatter_events(40_000, seed=10)
    events[:4000, 0] = np.random.default_rng(10).normal(-200, 300, 4000)  # 10% noise at or below 0
    result = run(write_fcs(tmp_path / "d.fcs", events, SCATTER_CHANNELS))
    cells = result.qc["gates"]["cells"]
    assert cells["method"].startswith("density valley")
    n_nonpositive = int(np.count_nonzero(result.sample.events[0] <= 0))
    assert cells["removed"]["fsc_at_or_below_0"] == n_nonpositive
    assert any(f"{n_nonpositive:,} of them lie below the debris cut and were removed" in x for x in result.qc["notes"])
