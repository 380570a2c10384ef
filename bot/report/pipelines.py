"""The one interface through which a pipeline adds to its run's report.

A pipeline's results function takes the run's facts and a reader of its analyses' outputs, and
returns PipelineResults (sections, files written beside the report, a one-line headline, an overview
image). A pipeline without one gets the run sections only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from bot.layout import BatchRef
from bot.report.model import PipelineResults, RunFacts
from bot.store import ObjectNotFound, Store


@dataclass(frozen=True)
class Outputs:
    """Reads what each analysis's job wrote under Output/{date}/{batch}/{analysis}/."""

    store: Store
    ref: BatchRef

    def key(self, analysis: str, name: str) -> str:
        return self.ref.analysis(analysis).output_prefix + name

    def read(self, analysis: str, name: str) -> bytes | None:
        try:
            return self.store.read_bytes(self.key(analysis, name))
        except ObjectNotFound:
            return None


ResultsFunction = Callable[[RunFacts, Outputs], PipelineResults]

# pipeline name -> "module:function"; imported only when a report of that pipeline is built.
RESULTS: dict[str, str] = {
    "cytometry": "bot.report.cytometry:results",
}


def results_function(pipeline: str) -> ResultsFunction | None:
    target = RESULTS.get(pipeline)
    if target is None:
        return None
    module, _, name = target.partition(":")
    function: ResultsFunction = getattr(importlib.import_module(module), name)
    return function
