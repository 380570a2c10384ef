"""Build a run's report and write it, with the pipeline's batch-level files, to the run's own folder
`Output/{date}/{batch}/_runs/{run}/` (and to a local folder on request)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from bot import engine as engine_module
from bot.engine import Engine
from bot.layout import BatchRef
from bot.ledger import Run
from bot.report.collect import collect
from bot.report.html import render_report
from bot.report.model import PipelineResults, RunFacts, Section
from bot.report.pipelines import Outputs, results_function

REPORT_NAME = "report.html"
log = logging.getLogger("cyto.report")


@dataclass(frozen=True)
class ReportResult:
    run_id: str
    key: str  # the report's key in the store
    uri: str  # where the report is (file:///… or s3://…)
    files: dict[str, str]  # every file written (report included): name -> URI
    facts: RunFacts
    results: PipelineResults
    local_dir: Path | None = None  # the --out folder, when one was given
    notes: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str | None:
        return self.results.headline

    @property
    def overview_png(self) -> bytes | None:
        name = self.results.overview
        return self.results.artifacts.get(name) if name else None

    @property
    def local_path(self) -> Path | None:
        return self.local_dir / REPORT_NAME if self.local_dir else None


def run_layout(run: Run) -> BatchRef:
    """Where the run's files are: the engine's own rule when it has one (a run started alongside another
    writes its outputs to a folder of its own), else the batch's folders."""
    rule = getattr(engine_module, "run_layout", None)
    return rule(run) if callable(rule) else BatchRef(run.date, run.batch)


def build_report(engine: Engine, run_id: str, *, out_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.time) -> ReportResult:
    """Build the report of a run (finished or not) from the ledger and the analyses' outputs."""
    facts = collect(engine, run_id, clock=clock)
    run = facts.run
    ref = run_layout(run)
    notes: list[str] = []
    results = PipelineResults()
    function = results_function(run.pipeline)
    if function is not None:
        try:
            results = function(facts, Outputs(engine.store, ref))
        except Exception as exc:  # the run sections stand without the pipeline's
            log.exception("report of run %s: the %s results failed", run_id, run.pipeline)
            notes.append(f"the {run.pipeline} results could not be built: {type(exc).__name__}: {exc}")
            results = PipelineResults(sections=(Section(
                "results", "Results", f"<p>The {escape(run.pipeline)} results could not be built: "
                f"{escape(type(exc).__name__)}: {escape(str(exc))}</p>"),))
    prefix = ref.run_prefix(run_id)
    html = render_report(facts, results.sections).encode()
    files: dict[str, str] = {}
    for name, data in [*results.artifacts.items(), (REPORT_NAME, html)]:
        engine.store.write_bytes(prefix + name, data)
        files[name] = engine.store.uri_for(prefix + name)
    local = None
    if out_dir is not None:
        local = Path(out_dir).expanduser().resolve()
        local.mkdir(parents=True, exist_ok=True)
        for name, data in [*results.artifacts.items(), (REPORT_NAME, html)]:
            (local / name).write_bytes(data)
    return ReportResult(run_id, prefix + REPORT_NAME, files[REPORT_NAME], files, facts, results, local, notes)
