"""The units a gate's coordinates are written in, per axis, and the way to and from data units.

- "linear": data units (what FlowJo shows on a linear axis, and what stats.csv reports).
- "decades": log10 of data units (3 means 1,000); events at or below 0 lie below every decade.
- "transformed": the pipeline's display scale (logicle 0-1 or arcsinh units) on fluorescence
  channels, linear on scatter and time: the unit of gates written before units were named.
"""

from __future__ import annotations

import numpy as np

from container.cytometry.fcs import Channel
from container.cytometry.transforms import Scale


def effective(unit: str, ch: Channel, scale: Scale) -> str:
    """The unit actually used on this channel: "transformed" is linear on scatter and time."""
    return "linear" if unit == "transformed" and not scale.applies(ch) else unit


def to_axis(values: np.ndarray, ch: Channel, unit: str, scale: Scale) -> np.ndarray:
    """Data values in the axis unit (float64 for decades; -inf for values <= 0)."""
    unit = effective(unit, ch, scale)
    if unit == "transformed":
        return np.asarray(scale.forward(values, ch))
    if unit == "decades":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log10(np.asarray(values, dtype=np.float64))
        out[~(np.asarray(values) > 0)] = -np.inf
        return out
    return values


def to_data(value: float, ch: Channel, unit: str, scale: Scale) -> float:
    """One coordinate in data units (the scales are monotonic, so bounds map to bounds)."""
    unit = effective(unit, ch, scale)
    if unit == "transformed":
        return float(scale.inverse(np.array([value], dtype=np.float64), ch)[0])
    if unit == "decades":
        return float(10.0**value)
    return value


def label(ch: Channel, unit: str, scale: Scale) -> str:
    name = f"{ch.name} ({ch.label})" if ch.label and ch.label != ch.name else ch.name
    unit = effective(unit, ch, scale)
    if unit == "transformed":
        return f"{name} [{scale.kind}]"
    if unit == "decades":
        return f"{name} [log10]"
    return name
