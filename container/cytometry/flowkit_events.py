"""The events FlowKit's gates see, prepared once per sample instead of once per gate.

FlowKit 1.3.2's `GatingStrategy.gate_sample` prepares the events for each gate on its own
(`_preprocess_sample_events`): it copies the whole compensated event matrix (96 MB for 1,000,000
events x 12 channels), transforms the gate's channels again, and compensates with a linear solve
over every event. Profiled on bench/bench_cytometry.py's gated case (8 gates), that preparation
was 60% of FlowKit's gating time.

`gate_sample` runs FlowKit's own gating with that one step replaced, for the call only, by
`Prepared`: per sample it compensates once per matrix (the matrix FlowKit resolves: the file's
spillover for "FCS", else the document's or the workspace's), in float64 as FlowKit does, as
inv(S)^T @ events^T (FlowKit solves S^T x = e per event: the same numbers to rounding, ~1e-16
relative), and transforms each channel once with FlowKit's own transform object (the same
numbers, bit for bit). Gate geometry, boolean and quadrant logic and the results stay FlowKit's.
A gate this step does not handle (a ratio dimension, mixed compensation, a dimension named only by
a matrix's fluorochrome) goes to FlowKit's own step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_RAW = None  # the key of the uncompensated events


def gate_sample(strategy: Any, sample: Any) -> Any:
    """`strategy.gate_sample(sample)` with the events prepared once (see the module docstring)."""
    prepared = Prepared(strategy, sample)
    # an instance attribute shadows the method for this call only; the strategy is shared by files
    strategy._preprocess_sample_events = prepared
    try:
        return strategy.gate_sample(sample)
    finally:
        del strategy._preprocess_sample_events


class Prepared:
    """A stand-in for `GatingStrategy._preprocess_sample_events` bound to one sample."""

    def __init__(self, strategy: Any, sample: Any) -> None:
        import flowkit as fk

        self.strategy = strategy
        self.sample = sample
        # FlowKit's own step, for the gates handled below only in part
        self.fallback = fk.GatingStrategy._preprocess_sample_events.__get__(strategy)
        self.raw = np.asarray(sample.get_events(source="raw"))
        self.labels = (
            list(sample.pnn_labels),
            list(sample.pns_labels),
            [label.replace("/", "_") for label in sample.pnn_labels],  # as FlowJo writes them
        )
        self._compensated: dict[str | None, tuple[list[int], np.ndarray]] = {}
        self._columns: dict[tuple[str | None, str | None, int], np.ndarray] = {}

    def __call__(self, sample: Any, gate: Any, cache_events: bool = False) -> Any:
        import pandas as pd

        if sample is not self.sample:
            return self.fallback(sample, gate, cache_events=cache_events)
        plan = self._plan(gate)
        if plan is None:
            return self.fallback(sample, gate, cache_events=cache_events)
        comp_ref, ids, columns = plan
        data = np.column_stack([self._column(comp_ref, xform, index) for index, xform in columns])
        return pd.DataFrame(data, columns=ids)

    def _plan(self, gate: Any) -> tuple[str | None, list[str], list[tuple[int, str | None]]] | None:
        """(compensation, dimension ids, (channel index, transform) per dimension), or None for FlowKit's step."""
        from flowkit._models import dimension

        comp_refs: set[str] = set()
        ids: list[str] = []
        columns: list[tuple[int, str | None]] = []
        for dim in gate.dimensions:
            if isinstance(dim, dimension.RatioDimension):
                return None
            if dim.compensation_ref not in (None, "uncompensated"):
                comp_refs.add(dim.compensation_ref)
            dim_id = dim.dimension_ref if isinstance(dim, dimension.QuadrantDivider) else dim.id
            index = next((labels.index(dim_id) for labels in self.labels if dim_id in labels), None)
            if index is None:
                return None
            ids.append(dim_id)
            columns.append((index, dim.transformation_ref))
        if len(comp_refs) > 1:
            return None
        return (next(iter(comp_refs)) if comp_refs else _RAW), ids, columns

    def _column(self, comp_ref: str | None, xform_ref: str | None, index: int) -> np.ndarray:
        key = (comp_ref, xform_ref, index)
        column = self._columns.get(key)
        if column is None:
            column = self._channel(comp_ref, index)
            if xform_ref is not None:
                xform = self.strategy.transformations[xform_ref]
                column = np.asarray(xform.apply(column.reshape(-1, 1))).reshape(-1)
            self._columns[key] = column
        return column

    def _channel(self, comp_ref: str | None, index: int) -> np.ndarray:
        """One channel's events, compensated as `comp_ref` says, contiguous."""
        if comp_ref not in self._compensated:
            self._compensated[comp_ref] = self._compensate(comp_ref)
        detectors, unmixed = self._compensated[comp_ref]
        if index in detectors:
            return unmixed[detectors.index(index)]
        return np.ascontiguousarray(self.raw[:, index])  # cached by the caller with its transform

    def _compensate(self, comp_ref: str | None) -> tuple[list[int], np.ndarray]:
        """(channel indices, their events compensated) with the matrix FlowKit resolves for `comp_ref`,
        by its rules; ([], empty) for uncompensated events."""
        from flowkit import Matrix

        none: tuple[list[int], np.ndarray] = ([], np.empty((0, 0)))
        if comp_ref is _RAW:
            return none
        sample = self.sample
        if comp_ref == "FCS":
            meta = sample.get_metadata()
            spill = meta.get("spillover", meta.get("spill"))
            if spill is None:  # GatingML 2.0: "FCS" without a spillover is uncompensated
                return none
            detectors = [sample.pnn_labels[i] for i in sample.fluoro_indices]
            fluorochromes = [sample.pns_labels[i] for i in sample.fluoro_indices]
            matrix = Matrix(spill, detectors, fluorochromes, null_channels=sample.null_channels)
        else:
            matrix = self.strategy.comp_matrices[comp_ref]
        fluoro = {sample.pnn_labels[i] for i in sample.fluoro_indices}
        if not set(matrix.detectors) <= fluoro:
            matrix.apply(sample)  # raises FlowKit's own error for detectors the file lacks
        indices = [sample.get_channel_index(d) for d in matrix.detectors]
        # observed = true @ S per event; channel-major (one contiguous row per detector, which the
        # transforms read fast): true^T = inv(S)^T @ observed^T
        unmix = np.linalg.inv(np.asarray(matrix.matrix, dtype=np.float64)).T
        return indices, unmix @ self.raw.T[indices]
