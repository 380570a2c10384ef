"""`cyto outputs`, `download` and `report`: what a run wrote."""

from __future__ import annotations

import json
from typing import Any

import click

from bot.api import Cyto
from bot.cli import completion
from bot.cli.app import cli
from bot.cli.common import UsageFailure, friendly_errors, json_option, location, open_session, size_text, stderr_console
from bot.cli.follow import reconcile


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=completion.complete_run)
@click.argument("analysis", required=False, shell_complete=completion.complete_analysis)
@json_option
@friendly_errors
def outputs(run_id: str, analysis: str | None, as_json: bool) -> None:
    """List what a run's analyses wrote under Output/ (or one ANALYSIS's files).

    Example: cyto outputs 3fa2c1 A05 --json
    """
    from bot.outputs import list_outputs

    cyto = open_session()
    found = list_outputs(cyto.store, *_run_and_analyses(cyto, run_id, analysis))
    if as_json:
        click.echo(json.dumps({"version": 1, "run_id": run_id, "outputs": [
            {"analysis": f.analysis, "path": f.relative, "size": f.size, "uri": f.uri} for f in found]}, indent=2))
        return
    if not found:
        click.echo(f"run {run_id}: no outputs yet")
    for f in found:
        click.echo(f"{f.analysis}/{f.relative}  {size_text(f.size)}  {f.uri}")


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=completion.complete_run)
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--analysis", "analyses", multiple=True, shell_complete=completion.complete_analysis,
              help="Only this analysis (repeatable; default: every analysis of the run).")
@friendly_errors
def download(run_id: str, dest: str, analyses: tuple[str, ...]) -> None:
    """Fetch a run's outputs into DEST/ANALYSIS/... (S3 through boto3's transfer manager).

    Example: cyto download 3fa2c1 ./results --analysis A05
    """
    from pathlib import Path

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from bot.outputs import download as fetch
    from bot.outputs import list_outputs

    cyto = open_session()
    ref, names = _run_and_analyses(cyto, run_id, None)
    for name in analyses:
        if name not in names:
            raise UsageFailure(f"--analysis {name}: run {run_id} has no analysis {name!r}")
    files = list_outputs(cyto.store, ref, list(analyses) or names)
    if not files:
        click.echo(f"run {run_id}: no outputs to download yet")
        return
    total = sum(f.size for f in files)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=stderr_console(), transient=True) as bar:
        task = bar.add_task(f"{len(files)} files", total=total)
        written = fetch(cyto.store, files, Path(dest), lambda n: bar.advance(task, n))
    click.echo(f"downloaded {len(written)} files ({size_text(total)}) of run {run_id} to {Path(dest).resolve()}")


def _run_and_analyses(cyto: Cyto, run_id: str, analysis: str | None) -> tuple[Any, list[str]]:
    """The run's file layout (where its outputs are) and its analyses, or the one asked for."""
    from bot.engine import run_layout

    run_ = cyto.engine.get_run(run_id)
    names = [j.analysis for j in cyto.jobs(run_id)]
    if analysis is not None:
        if analysis not in names:
            raise UsageFailure(f"run {run_id} has no analysis {analysis!r} (it has {', '.join(names[:5])}"
                               f"{' …' if len(names) > 5 else ''})")
        names = [analysis]
    return run_layout(run_), names

@cli.command("report")
@click.argument("run_id", metavar="RUN")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Also write the report into this folder.")
@friendly_errors
def report_command(run_id: str, out_dir: str | None) -> None:
    """Build a run's report: one HTML page (parameters, analyses, failures, timeline, durations, and the
    pipeline's results such as the QC verdicts), written to Output/DATE/BATCH/_runs/RUN/.

    Example: cyto report 3fa2c1 --out ./reports
    """
    cyto = open_session()
    reconcile(cyto)
    summary = cyto.status(run_id)
    if not summary.finished:
        click.echo(f"run {run_id} is {summary.run.state.value.lower()}: the report shows it as it is now")
    try:
        result = cyto.report(run_id, out_dir)
    except OSError as exc:
        raise UsageFailure(f"cannot write the report: {exc}") from exc
    if result.headline:
        click.echo(f"QC: {result.headline}")
    click.echo(f"report: {location(result.uri)}")
    for name, uri in sorted(result.files.items()):
        if name != "report.html":
            click.echo(f"  {name}: {location(uri)}")
    if result.local_path is not None:
        click.echo(f"copy: {result.local_path}")
