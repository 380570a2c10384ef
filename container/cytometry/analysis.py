"""One file, start to finish: read, compensate, gate, measure, check; the plot is separate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container.cytometry import fcs, gating, gatingfile, qc, stats
from container.cytometry.params import Params
from container.cytometry.transforms import Scale, compensate


@dataclass
class FileResult:
    sample: fcs.Sample
    gating: gating.Gating
    rows: list[dict[str, Any]]
    qc: dict[str, Any]
    seconds: float
    channels: list[str] = field(default_factory=list)


def scale_of(params: Params) -> Scale:
    return Scale(params.transform, params.cofactor, params.logicle)


def analyse(
    path: Path,
    name: str,
    params: Params,
    measurer: stats.Measurer | None = None,
    gating_file: gatingfile.GatingFile | None = None,
) -> FileResult:
    start = time.perf_counter()
    measurer = measurer or stats.Measurer()
    sample = fcs.read(path)
    if gating_file is not None:
        # FlowKit gates from the raw file with the gating file's own compensation; the statistics
        # use the same matrix (the workspace's, else the file's spillover)
        gates = gatingfile.apply(gating_file, path, sample, name)
        compensated = compensate(sample, gatingfile.compensation(gating_file, name)) if params.compensate else []
    else:
        compensated = compensate(sample) if params.compensate else []
        gates = gating.gate(sample, params, scale_of(params))
    channels = [ch for ch in sample.channels if ch.kind != "time"]
    rows = []
    indices = [ch.index for ch in channels]
    masks = [p.mask for p in gates.populations]
    measured = measurer.measure(sample.events, indices, masks)
    moments = stats.moments(sample.events, indices, masks)
    total = sample.n_events
    for pop, values, more in zip(gates.populations, measured, moments, strict=True):
        parent = gates.get(pop.parent)
        parent_count = parent.count if parent is not None else pop.count
        row: dict[str, Any] = {
            "file": name,
            "population": pop.name,
            "parent": pop.parent,
            "events": pop.count,
            "pct_of_parent": 100.0 * pop.count / parent_count if parent_count else float("nan"),
            "pct_of_total": 100.0 * pop.count / total if total else float("nan"),
        }
        for ch in channels:
            median, rcv = values[ch.index]
            mean, gmean, cv = more[ch.index]
            row.update(
                {
                    f"{ch.name}_median": median,
                    f"{ch.name}_mean": mean,
                    f"{ch.name}_geomean": gmean,
                    f"{ch.name}_CV": cv,
                    f"{ch.name}_rCV": rcv,
                }
            )
        rows.append(row)
    fsc, _, _, _, _ = gating.scatter_channels(sample, params)
    drift = qc.drift(sample, gates, params, qc.drift_channel(sample, params, fsc))
    entry: dict[str, Any] = {
        "status": "ok",
        "events": sample.n_events,
        "fcs_version": sample.version,
        "flags": qc.flags(sample, gates, params, drift),
        "saturation": {k: round(v, 6) for k, v in sample.saturation.items()},
        "drift": drift,
        "compensated_channels": compensated,
        "gates": gates.method,
        "notes": sample.notes + gates.notes,
    }
    return FileResult(sample, gates, rows, entry, time.perf_counter() - start, [c.name for c in channels])
