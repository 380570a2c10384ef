"""Where a run's files live: the one place that maps a run to its folders."""

from __future__ import annotations

from bot.layout import BatchRef
from bot.ledger import Run


def run_layout(run: Run) -> BatchRef:
    """Where a run's files live: its batch, with its own Output folder when it ran alongside another."""
    return BatchRef(run.date, run.batch, run.id if run.outputs_scoped else None)
