"""Compensation (in place, chunked) and the display/gating scales (logicle, arcsinh)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flowutils import compensate as fu_compensate
from flowutils import transforms as fu_transforms

from container.cytometry.fcs import Channel, FcsError, Sample
from container.cytometry.params import Logicle

SPILL_KEYS = ("spillover", "spill", "comp")


def _label(key: str) -> str:
    return f"${key.upper()}" if key in SPILL_KEYS else f"the {key}"  # FlowIO drops the "$" and lower-cases keywords
COMP_BLOCK = 1 << 13  # events per compensation product: both operands stay in L2


def spillover(sample: Sample) -> tuple[str, list[int], np.ndarray] | None:
    """(keyword, channel indices, spillover matrix) of the file, or None when it has none."""
    for key in SPILL_KEYS:
        value = sample.text.get(key, "").strip()
        if value:
            break
    else:
        return None
    parts = [p.strip() for p in value.split(",")]
    if parts[0].isdigit() and len(parts) == int(parts[0]) + 1:
        # Some writers (e.g. MACSQuant) list the channels without any matrix values.
        sample.notes.append(f"${key.upper()} names channels but holds no matrix; not compensated")
        return None
    try:
        matrix, names = fu_compensate.get_spill(value)
    except (ValueError, IndexError) as exc:
        raise FcsError(f"${key.upper()} is not a valid spillover matrix ({exc}); set compensate: false") from None
    indices: list[int] = []
    for name in names:
        ch = sample.find(name)
        if ch is None and name.isdigit() and 1 <= int(name) <= len(sample.channels):
            ch = sample.channels[int(name) - 1]
        if ch is None:
            raise FcsError(f"${key.upper()} names channel {name!r} which the file does not have")
        indices.append(ch.index)
    if len(set(indices)) != len(indices):
        raise FcsError(f"${key.upper()} names a channel twice")
    return key, indices, matrix


def compensate(sample: Sample, given: tuple[list[str], np.ndarray] | None = None) -> list[str]:
    """Apply the file's spillover matrix (or the `given` detectors and matrix) in place; return the
    compensated channel names."""
    found = spillover(sample) if given is None else _given(sample, *given)
    if found is None:
        return []
    key, indices, matrix = found
    if not np.all(np.isfinite(matrix)) or np.linalg.cond(matrix) > 1e8:
        raise FcsError(f"{_label(key)} spillover matrix is singular or not finite; set compensate: false")
    # observed = true @ S per event (row vector); events are stored channel-major, so
    # true^T = inv(S)^T @ observed^T: one BLAS product per cache-sized block of events (small
    # blocks also keep OpenBLAS from spreading a tiny product over threads). Float32 throughout:
    # flowutils' float64 compensation to float32 precision (tests/test_cytometry_fcs.py).
    unmix = np.linalg.inv(matrix).T.astype(np.float32)
    _apply_rows(sample.events, indices, unmix)
    return [sample.channels[i].name for i in indices]


def _given(sample: Sample, names: list[str], matrix: np.ndarray) -> tuple[str, list[int], np.ndarray]:
    indices = []
    for name in names:
        ch = sample.find(name)
        if ch is None:
            raise FcsError(f"the gating file's compensation names channel {name!r} which the file does not have")
        indices.append(ch.index)
    return "gating file matrix", indices, matrix


def _apply_rows(events: np.ndarray, indices: list[int], matrix: np.ndarray) -> None:
    """events[indices] = matrix @ events[indices], in place, one block of events at a time."""
    first = indices[0]
    # adjacent channels (the usual case): a strided view that BLAS reads without a copy
    rows = slice(first, first + len(indices)) if indices == list(range(first, first + len(indices))) else indices
    out = np.empty((len(indices), COMP_BLOCK), dtype=np.float32)
    n = events.shape[1]
    for a in range(0, n, COMP_BLOCK):
        b = min(a + COMP_BLOCK, n)
        result = out[:, : b - a]
        np.matmul(matrix, events[rows, a:b], out=result)
        events[rows, a:b] = result


@dataclass(frozen=True)
class Scale:
    """How fluorescence channels are shown and gated; scatter and time stay linear."""

    kind: str  # "logicle" | "arcsinh"
    cofactor: float
    logicle: Logicle

    def applies(self, ch: Channel) -> bool:
        return ch.kind == "fluorescence"

    def top(self, ch: Channel) -> float:
        return self.logicle.t if self.logicle.t is not None else max(ch.top, 1.0)

    def forward(self, values: np.ndarray, ch: Channel) -> np.ndarray:
        if not self.applies(ch):
            return values
        if self.kind == "arcsinh":
            return np.arcsinh(values / np.float32(self.cofactor))
        lg = self.logicle
        data = np.ascontiguousarray(values, dtype=np.float64)
        return fu_transforms.logicle(data, None, t=self.top(ch), m=lg.m, w=lg.w, a=lg.a)

    def inverse(self, values: np.ndarray, ch: Channel) -> np.ndarray:
        if not self.applies(ch):
            return values
        if self.kind == "arcsinh":
            return np.sinh(values) * self.cofactor
        lg = self.logicle
        data = np.ascontiguousarray(values, dtype=np.float64)
        return fu_transforms.logicle_inverse(data, None, t=self.top(ch), m=lg.m, w=lg.w, a=lg.a)

    def describe(self) -> str:
        if self.kind == "arcsinh":
            return f"arcsinh(x / {self.cofactor:g})"
        lg = self.logicle
        t = "channel top of scale" if lg.t is None else f"{lg.t:g}"
        return f"logicle(T={t}, W={lg.w:g}, M={lg.m:g}, A={lg.a:g})"
