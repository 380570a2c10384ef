"""Run reports: one self-contained HTML page per run (in the spirit of Nextflow's execution report and
MultiQC), plus whatever batch-level tables the run's pipeline adds.

    from bot.report import build_report
    result = build_report(engine, run_id)       # writes Output/{date}/{batch}/_runs/{run}/report.html
    result.uri, result.headline

Every pipeline gets the run sections (parameters, analyses, failures with excerpts, timeline,
durations); a pipeline adds its own through one function registered in bot/report/pipelines.py.
"""

from bot.report.build import ReportResult, build_report
from bot.report.model import PipelineResults, Section

__all__ = ["PipelineResults", "ReportResult", "Section", "build_report"]
