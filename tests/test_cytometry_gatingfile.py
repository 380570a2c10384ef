"""Gates from FlowJo workspaces and GatingML 2.0 documents (FlowKit), against published results.

The data under tests/data/flowkit/ are FlowKit 1.3.2's own test data (BSD-3-Clause, its LICENSE
beside them), committed here because FlowKit's sdist on PyPI does not ship them:
- gate_ref/: the GatingML 2.0 compliance suite: data1.fcs, one document per gate (gml/) and the
  expected membership of every event in every gate (truth/Results_<gate>.txt, one 0/1 per line);
- simple_line_example/, simple_diamond_example/: FlowJo 10 workspaces with their FCS files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from container.cytometry import analysis, gatingfile
from container.cytometry import params as params_mod

DATA = Path(__file__).resolve().parent / "data" / "flowkit"
GATE_REF = DATA / "gate_ref"
DOCUMENTS = sorted(p for p in (GATE_REF / "gml").glob("gml_*.xml") if p.name != "gml_all_gates.xml")
INVALID = "gml_range_gate_attr_testing.xml"  # its gate sits in a <sample> element: not GatingML 2.0
NO_EXPECTED = "gml_ellipse2_gate.xml"  # the suite gives no expected result for myEllipse2
CHECKED = [p for p in DOCUMENTS if p.name not in (INVALID, NO_EXPECTED)]


def truth(gate: str) -> np.ndarray | None:
    path = GATE_REF / "truth" / f"Results_{gate}.txt"
    if not path.is_file():
        return None
    return np.array([line.strip() == "1" for line in path.read_text().split()], dtype=bool)


def test_the_compliance_suite_is_complete() -> None:
    assert len(DOCUMENTS) == 46 and len(CHECKED) == 44
    assert len(list((GATE_REF / "truth").glob("Results_*.txt"))) == 51


@pytest.mark.parametrize("document", CHECKED, ids=lambda p: p.stem.removeprefix("gml_"))
def test_gatingml_compliance(document: Path) -> None:
    gf = gatingfile.load(document)
    result = analysis.analyse(GATE_REF / "data1.fcs", "data1.fcs", params_mod.parse({}), gating_file=gf)
    compared = 0
    for pop in result.gating.populations[1:]:
        expected = truth(pop.name.split("/")[-1])
        if expected is None:
            continue
        assert pop.mask is not None and pop.mask.shape == expected.shape
        mismatched = int(np.count_nonzero(pop.mask != expected))
        assert mismatched == 0, f"{pop.name}: {mismatched} events differ from the expected membership"
        compared += 1
    assert compared >= 1, [p.name for p in result.gating.populations]


def test_all_gates_in_one_document() -> None:
    gf = gatingfile.load(GATE_REF / "gml" / "gml_all_gates.xml")
    result = analysis.analyse(GATE_REF / "data1.fcs", "data1.fcs", params_mod.parse({}), gating_file=gf)
    compared = 0
    for pop in result.gating.populations[1:]:
        expected = truth(pop.name.split("/")[-1])
        if expected is not None:
            np.testing.assert_array_equal(pop.mask, expected, err_msg=pop.name)
            compared += 1
    assert compared == 49  # every gate but the quadrant containers


def test_a_document_that_is_not_gatingml_is_refused_in_plain_words() -> None:
    with pytest.raises(gatingfile.GatingFileError, match=r"is not a usable GatingML 2\.0 document"):
        gatingfile.load(GATE_REF / "gml" / INVALID)


def test_range2_counts_4710_with_half_open_bounds() -> None:
    gf = gatingfile.load(GATE_REF / "gml" / "gml_time_range_gate.xml")
    result = analysis.analyse(GATE_REF / "data1.fcs", "data1.fcs", params_mod.parse({}), gating_file=gf)
    assert result.gating.get("Range2").count == 4710
