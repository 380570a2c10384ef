"""FlowKit's gating with the events prepared once per sample (container/cytometry/flowkit_events.py)
gives every population exactly the events FlowKit's own `gate_sample` gives."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container.cytometry import flowkit_events
from tests.fcs_data import write_fcs
from tests.test_cytometry_gatingfile import CHECKED, DATA, GATE_REF, WORKSPACES, needs_data

CHANNELS = ["FSC-A", "SSC-A", "FITC-A", "PE-A", "APC-A", "Time"]
SPILL = "3,FITC-A,PE-A,APC-A,1,0.1,0.02,0.05,1,0.1,0,0.03,1"


def memberships(results: Any) -> dict[tuple[str, tuple[str, ...]], np.ndarray]:
    return {
        (row.gate_name, tuple(row.gate_path)): np.asarray(
            results.get_gate_membership(row.gate_name, gate_path=tuple(row.gate_path)), dtype=bool)
        for row in results.report.itertuples(index=False)
    }


class Counting(flowkit_events.Prepared):
    """Prepared, counting the gates it left to FlowKit's own step."""

    fallbacks = 0

    def __init__(self, strategy: Any, sample: Any) -> None:
        super().__init__(strategy, sample)
        own = self.fallback

        def counted(*args: Any, **kwargs: Any) -> Any:
            Counting.fallbacks += 1
            return own(*args, **kwargs)

        self.fallback = counted


def assert_same_as_flowkit(strategy: Any, sample: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every population equal to FlowKit's own gating; returns how many gates went to FlowKit's step."""
    monkeypatch.setattr(flowkit_events, "Prepared", Counting)
    Counting.fallbacks = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = memberships(strategy.gate_sample(sample))
        ours = memberships(flowkit_events.gate_sample(strategy, sample))
    assert "_preprocess_sample_events" not in vars(strategy)  # the strategy is left as it was
    assert ours.keys() == theirs.keys()
    for key, expected in theirs.items():
        assert int(np.count_nonzero(ours[key] != expected)) == 0, key
    return Counting.fallbacks


def panel() -> Any:
    """Compensation from the file, logicle, and the common gate types (quadrants and a ratio too)."""
    import flowkit as fk

    gs = fk.GatingStrategy()
    gs.add_transform("logicle", fk.transforms.LogicleTransform(param_t=262144, param_w=0.5, param_m=4.5, param_a=0))

    def fl(name: str, lo: float | None = None, hi: float | None = None) -> Any:
        return fk.Dimension(name, compensation_ref="FCS", transformation_ref="logicle", range_min=lo, range_max=hi)

    root = ("root",)
    cells = fk.gates.PolygonGate("cells", [fk.Dimension("FSC-A"), fk.Dimension("SSC-A")],
                                 [[30_000, 5_000], [150_000, 5_000], [150_000, 80_000], [30_000, 80_000]])
    gs.add_gate(cells, root)
    here = (*root, "cells")
    gs.add_gate(fk.gates.RectangleGate("FITCpos", [fl("FITC-A", 0.45)]), here)
    gs.add_gate(fk.gates.RectangleGate("PE_range", [fl("PE-A", 0.3, 0.6)]), here)
    gs.add_gate(fk.gates.EllipsoidGate("blob", [fl("APC-A"), fl("PE-A")], coordinates=[0.45, 0.45],
                                       covariance_matrix=[[0.01, 0.002], [0.002, 0.01]], distance_square=4.0), here)
    gs.add_gate(fk.gates.RectangleGate("raw_FITC", [fk.Dimension("FITC-A", range_min=1000)]), here)
    refs = [{"ref": "FITCpos", "path": here, "complement": False},
            {"ref": "PE_range", "path": here, "complement": True}]
    gs.add_gate(fk.gates.BooleanGate("FITC_not_PE", "and", refs), here)
    quadrants = [
        fk.QuadrantDivider("q_fitc", "FITC-A", "FCS", [0.45], transformation_ref="logicle"),
        fk.QuadrantDivider("q_pe", "PE-A", "FCS", [0.45], transformation_ref="logicle"),
    ]
    quads = [
        fk.gates.Quadrant(name, divider_refs=["q_fitc", "q_pe"],
                          divider_ranges=[fitc, pe])
        for name, fitc, pe in (("FITC-PE-", (None, 0.45), (None, 0.45)), ("FITC+PE-", (0.45, None), (None, 0.45)),
                               ("FITC-PE+", (None, 0.45), (0.45, None)), ("FITC+PE+", (0.45, None), (0.45, None)))
    ]
    gs.add_gate(fk.gates.QuadrantGate("quads", dividers=quadrants, quadrants=quads), here)
    gs.add_transform("ratio", fk.transforms.RatioTransform(["FSC-A", "SSC-A"], param_a=1, param_b=0, param_c=0))
    wide = fk.RatioDimension("ratio", "uncompensated", range_min=2.0, range_max=1e6)  # FlowKit needs both ends
    gs.add_gate(fk.gates.RectangleGate("wide", [wide]), root)
    return gs


def test_the_same_populations_as_flowkit_on_a_compensated_logicle_panel(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import flowkit as fk

    rng = np.random.default_rng(3)
    n = 20_000
    events = np.column_stack([
        rng.normal(80_000, 20_000, n), np.abs(rng.normal(40_000, 15_000, n)),
        *(rng.lognormal(6, 1.5, n) - 200 for _ in range(3)), np.linspace(0, 100, n),
    ])
    path = write_fcs(tmp_path / "panel.fcs", events, CHANNELS, metadata={"spillover": SPILL})
    sample = fk.Sample(str(path), subsample=0)
    strategy = panel()
    assert assert_same_as_flowkit(strategy, sample, monkeypatch) == 1  # the ratio gate: FlowKit's own step
    # every kind of population is non-trivial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = flowkit_events.gate_sample(strategy, sample).report.set_index("gate_name")["count"]
    assert all(0 < counts[name] < n for name in ("cells", "FITCpos", "PE_range", "blob", "FITC_not_PE", "wide"))


@needs_data
@pytest.mark.parametrize("document", CHECKED, ids=lambda p: p.stem.removeprefix("gml_"))
def test_the_same_populations_as_flowkit_on_the_compliance_suite(document: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import flowkit as fk

    sample = fk.Sample(str(GATE_REF / "data1.fcs"), subsample=0)
    assert_same_as_flowkit(fk.parse_gating_xml(str(document)), sample, monkeypatch)


@needs_data
@pytest.mark.parametrize("key", sorted(WORKSPACES))
def test_the_same_populations_as_flowkit_on_flowjo_workspaces(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import flowkit as fk

    workspace = fk.parse_wsp(str(WORKSPACES[key]))
    for sample_id, data in workspace["samples"].items():
        path = WORKSPACES[key].parent / sample_id
        if not path.is_file():
            continue
        sample = fk.Sample(str(path), sample_id=sample_id, use_flowjo_labels=True, subsample=0)
        assert assert_same_as_flowkit(data["gating_strategy"], sample, monkeypatch) == 0
    assert DATA.is_dir()
