"""The bench's gating document: 8 populations over the 12 bench channels, written as GatingML 2.0.

Compensation from the file's $SPILLOVER ("FCS"), logicle on fluorescence, and every common gate
type: polygon, rectangle, range, ellipse and a boolean AND NOT. Gate ids are XML names (no "+" or
spaces), as GatingML 2.0 requires.
"""

from __future__ import annotations

from pathlib import Path


def write_document(path: Path) -> int:
    """Write the document; return its number of populations."""
    import flowkit as fk

    gs = fk.GatingStrategy()
    gs.add_transform("logicle", fk.transforms.LogicleTransform(param_t=262144, param_w=0.5, param_m=4.5, param_a=0))

    def lin(name: str, lo: float | None = None, hi: float | None = None) -> fk.Dimension:
        return fk.Dimension(name, range_min=lo, range_max=hi)

    def fl(name: str, lo: float | None = None, hi: float | None = None) -> fk.Dimension:
        return fk.Dimension(name, compensation_ref="FCS", transformation_ref="logicle", range_min=lo, range_max=hi)

    root = ("root",)
    cells = fk.gates.PolygonGate(
        "cells",
        [lin("FSC-A"), lin("SSC-A")],
        [[30_000, 5_000], [150_000, 5_000], [150_000, 80_000], [30_000, 80_000]],
    )
    gs.add_gate(cells, root)
    gs.add_gate(fk.gates.RectangleGate("singlets", [lin("FSC-H", 20_000, 140_000)]), (*root, "cells"))
    here = (*root, "cells", "singlets")
    gs.add_gate(fk.gates.RectangleGate("FITCpos", [fl("FITC-A", 0.45)]), here)
    gs.add_gate(fk.gates.RectangleGate("PEpos", [fl("PE-A", 0.45), fl("PerCP-A", None, 0.6)]), here)
    gs.add_gate(
        fk.gates.EllipsoidGate(
            "APC_blob",
            [fl("APC-A"), fl("APC-Cy7-A")],
            coordinates=[0.45, 0.45],
            covariance_matrix=[[0.01, 0.002], [0.002, 0.01]],
            distance_square=4.0,
        ),
        here,
    )
    gs.add_gate(
        fk.gates.PolygonGate(
            "BV421_BV510", [fl("BV421-A"), fl("BV510-A")], [[0.3, 0.3], [0.7, 0.35], [0.6, 0.7], [0.35, 0.6]]
        ),
        (*here, "FITCpos"),
    )
    gs.add_gate(fk.gates.RectangleGate("PECy7_range", [fl("PE-Cy7-A", 0.3, 0.6)]), (*here, "PEpos"))
    refs = [
        {"ref": "FITCpos", "path": here, "complement": False},
        {"ref": "PEpos", "path": here, "complement": True},
    ]
    gs.add_gate(fk.gates.BooleanGate("FITCpos_not_PEpos", "and", refs), here)
    with path.open("wb") as fh:
        fk.export_gatingml(gs, fh)
    return len(gs.get_gate_ids())
