"""`cyto outputs`, `download` and `report`: what a run wrote."""

from __future__ import annotations

import json

import click

from bot.api import NotFound
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
    found = open_session().outputs(run_id, analysis)
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

    cyto = open_session()
    files = []
    for name in analyses:
        try:
            files += cyto.outputs(run_id, name)
        except NotFound as exc:
            raise UsageFailure(f"--analysis {name}: {exc}") from None
    if not analyses:
        files = cyto.outputs(run_id)
    if not files:
        click.echo(f"run {run_id}: no outputs to download yet")
        return
    total = sum(f.size for f in files)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=stderr_console(), transient=True) as bar:
        task = bar.add_task(f"{len(files)} files", total=total)
        written = cyto.download(files, dest, lambda n: bar.advance(task, n))
    click.echo(f"downloaded {len(written)} files ({size_text(total)}) of run {run_id} to {Path(dest).resolve()}")


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
