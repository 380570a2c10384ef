"""The `cyto` command line: a thin layer over the engine (bot.api.Cyto).

Exit codes: 0 every analysis succeeded, 1 some analyses failed, 2 a usage or configuration error.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bot import __version__
from bot.api import Cyto
from bot.db import DatabaseError
from bot.engine import EngineError, RunSummary
from bot.executors import ExecutorError
from bot.layout import LayoutError
from bot.progress import RunProgress, summary_lines
from bot.report import ReportResult
from bot.settings import ConfigError
from bot.states import JobState
from bot.store import StoreError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageFailure(click.ClickException):
    """A clear one-line message and exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"cyto: {self.format_message()}", err=True)


def friendly_errors(func: F) -> F:
    """Turn the engine's narrow exceptions into one-line messages with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, StoreError, DatabaseError, ExecutorError, EngineError, LayoutError) as exc:
            raise UsageFailure(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def open_session() -> Cyto:
    return Cyto.from_env()


def parse_params(pairs: tuple[str, ...], params_json: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise UsageFailure(f"--params is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageFailure("--params must be a JSON object, e.g. '{\"transform\": \"logicle\"}'")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageFailure(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def resource_options(func: F) -> F:
    options = [
        click.option("--pipeline", help="Pipeline to run (default: CYTO_DEFAULT_PIPELINE or cytometry)."),
        click.option("--vcpus", type=float, help="vCPUs per job (default 1)."),
        click.option("--memory", "memory_mib", type=int, help="Memory per job in MiB (default 2048)."),
        click.option("--storage", "storage_gib", type=int, help="Scratch storage per job in GiB (default 20)."),
        click.option("--timeout", "timeout_s", type=int, help="Seconds before a job is stopped (default 3600)."),
        click.option("--retries", type=int, help="Automatic retries of a failed analysis (default 2)."),
        click.option("--param", "param_pairs", multiple=True, metavar="KEY=VALUE",
                     help="A pipeline parameter (repeatable); VALUE is JSON or a string."),
        click.option("--params", "params_json", metavar="JSON", help="Pipeline parameters as a JSON object."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cyto")
def cli() -> None:
    """cyto-bot: run every analysis of a batch as its own job, and follow the run.

    Configuration comes from environment variables (CYTO_STORE, CYTO_EXECUTOR, CYTO_DB, ...);
    with none set, the store is ./cyto-data, jobs run as local processes and runs are kept in
    ./.cyto/runs.sqlite.
    """


def follow(cyto: Cyto, run_id: str, out: Any = None, interval: float = 0.5) -> RunSummary:
    """Poll until the run finishes, showing progress; return the final summary."""
    out = out or sys.stdout
    summary = cyto.status(run_id)
    progress = RunProgress(out, summary.total, f"{summary.run.label} ({run_id})")
    unsubscribe = cyto.engine.subscribe(lambda e: progress.event(e) if e.run_id == run_id else None)
    try:
        while True:
            cyto.poll()
            summary = cyto.status(run_id)
            progress.update(summary)
            if summary.finished:
                return summary
            time.sleep(interval)
    except KeyboardInterrupt:
        progress.close()
        click.echo(f"\nstopped following run {run_id}; its jobs go on. `cyto status {run_id} --wait` follows it again.",
                   err=True)
        sys.exit(130)
    finally:
        unsubscribe()
        progress.close()


def report(summary: RunSummary, cyto: Cyto | None = None) -> int:
    """Print the summary; for a finished run followed to its end, build its report and say where it is."""
    for line in summary_lines(summary):
        click.echo(line)
    if cyto is not None and summary.finished:
        _print_report(_build_report(cyto, summary.run.id))
    return EXIT_OK if summary.count(JobState.FAILED) == 0 and summary.count(JobState.CANCELLED) == 0 \
        else EXIT_FAILED


@cli.command()
@click.argument("date")
@click.argument("batch")
@resource_options
@click.option("--wait/--no-wait", default=False, help="Follow the run until it finishes.")
@friendly_errors
def run(date: str, batch: str, pipeline: str | None, vcpus: float | None, memory_mib: int | None,
        storage_gib: int | None, timeout_s: int | None, retries: int | None, param_pairs: tuple[str, ...],
        params_json: str | None, wait: bool) -> None:
    """Submit one job per analysis of Input/DATE/BATCH/.

    Example: cyto run 2018-12-05 batch-7 --pipeline wordcount --memory 4096 --wait
    """
    cyto = open_session()
    plan = cyto.plan(date, batch, pipeline=pipeline, vcpus=vcpus, memory_mib=memory_mib, storage_gib=storage_gib,
                     timeout_s=timeout_s, retries=retries, params=parse_params(param_pairs, params_json))
    started = cyto.engine.start_run(plan, requested_by=_whoami())
    click.echo(f"run {started.id}: {len(plan.analyses)} analyses of {plan.ref.label} submitted "
               f"({plan.pipeline}, {plan.resources.vcpus:g} vCPU, {plan.resources.memory_mib} MiB)")
    if wait:
        sys.exit(report(follow(cyto, started.id), cyto))


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many recent runs to list.")
@friendly_errors
def runs(limit: int) -> None:
    """List recent runs, newest first."""
    cyto = open_session()
    found = cyto.runs(limit)
    if not found:
        click.echo("no runs yet: start one with `cyto run DATE BATCH` or try `cyto demo`")
        return
    for r in found:
        summary = cyto.status(r.id)
        counts = f"{summary.count(JobState.SUCCEEDED)}/{summary.total} ok"
        failed = summary.count(JobState.FAILED)
        click.echo(f"{r.id}  {r.label:<32} {r.pipeline:<11} {r.state.value.lower():<10} {counts}"
                   f"{f', {failed} failed' if failed else ''}  by {r.requested_by}  "
                   f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created_at))}")


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option("--wait/--no-wait", default=False, help="Follow the run until it finishes.")
@friendly_errors
def status(run_id: str, wait: bool) -> None:
    """Show a run's counts by state, durations and failure reasons (polls once first).

    After a crash or a restart, `cyto status RUN --wait` resumes following the run.
    """
    cyto = open_session()
    cyto.engine.get_run(run_id)
    if wait:
        sys.exit(report(follow(cyto, run_id), cyto))
    cyto.poll()
    sys.exit(report(cyto.status(run_id)))


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("analysis")
@click.option("--tail", default=15, show_default=True, help="How many last lines to show.")
@click.option("--attempt", type=int, help="Which attempt (default: the latest that ran).")
@friendly_errors
def logs(run_id: str, analysis: str, tail: int, attempt: int | None) -> None:
    """Show the part of an analysis's log worth reading: the first error and the last lines."""
    cyto = open_session()
    found = cyto.logs(run_id, analysis, attempt, tail=tail)
    click.echo(f"{analysis}, attempt {found.attempt} (full log: {found.full_log})")
    if found.explanation:
        click.echo(found.explanation)
    if found.excerpt is None:
        click.echo("no log yet")
    else:
        click.echo(found.excerpt.text)


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("analysis", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed analysis of the run.")
@click.option("--memory", "memory_mib", type=int, help="Memory in MiB for the new attempt.")
@click.option("--wait/--no-wait", default=False, help="Follow the run until it finishes.")
@friendly_errors
def retry(run_id: str, analysis: str | None, all_failed: bool, memory_mib: int | None, wait: bool) -> None:
    """Retry one failed analysis of a run, or all failed ones with --failed."""
    if bool(analysis) == all_failed:
        raise UsageFailure("name one ANALYSIS to retry, or pass --failed to retry every failed analysis")
    cyto = open_session()
    retried = cyto.retry(run_id, analysis, by=_whoami(), memory_mib=memory_mib)
    if not retried:
        click.echo(f"run {run_id}: nothing to retry")
    else:
        click.echo(f"run {run_id}: retrying {', '.join(retried)}")
    if wait:
        sys.exit(report(follow(cyto, run_id), cyto))


@cli.command()
@click.argument("run_id", metavar="RUN")
@friendly_errors
def cancel(run_id: str) -> None:
    """Cancel a run: queued jobs are dropped, running ones stopped."""
    cyto = open_session()
    if cyto.cancel(run_id, by=_whoami()):
        click.echo(f"run {run_id}: cancelling")
    else:
        click.echo(f"run {run_id} is {cyto.engine.get_run(run_id).state.value.lower()}: nothing to cancel")


@cli.command()
@click.argument("date", required=False)
@friendly_errors
def batches(date: str | None) -> None:
    """List the dates in the store, or the batches of DATE with their number of analyses."""
    cyto = open_session()
    cyto.store.check()
    if date is None:
        dates = cyto.dates()
        if not dates:
            click.echo(f"{cyto.store.uri} has no Input/YYYY-MM-DD/ folders yet")
        for d in dates:
            names = cyto.batches(d)
            click.echo(f"{d}  {len(names)} batch{'es' if len(names) != 1 else ''}: {', '.join(names[:5])}"
                       f"{' …' if len(names) > 5 else ''}")
        return
    from bot import catalog
    from bot.layout import BatchRef, parse_date

    names = cyto.batches(parse_date(date))
    if not names:
        click.echo(f"no batches on {date}")
    for name in names:
        count = sum(1 for _ in catalog.iter_analyses(cyto.store, BatchRef(date, name)))
        click.echo(f"{name}  {count} analys{'es' if count != 1 else 'is'}")


@cli.command()
@click.option("--pipeline", type=click.Choice(["cytometry", "wordcount"]), default="cytometry", show_default=True,
              help="The cytometry plate, or the word-count batch.")
@click.option("--retries", default=1, show_default=True, help="Automatic retries of a failing analysis.")
@friendly_errors
def demo(pipeline: str, retries: int) -> None:
    """Create a sample batch (one analysis fails on purpose), run it and show the result.

    The cytometry demo is a small plate of synthetic FCS files (debris, doublets, a spillover matrix,
    a drifting well, a gap in Time, a well with too few events, an unreadable file); it ends with the
    QC verdicts and where the run report is.
    """
    from bot.demo import CYTOMETRY_FAILING, FAILING_ANALYSIS, write_cytometry_batch, write_demo_batch

    cyto = open_session()
    if pipeline == "cytometry":
        try:
            ref, analyses = write_cytometry_batch(cyto.store)
        except RuntimeError as exc:
            raise UsageFailure(f"{exc}; or try `cyto demo --pipeline wordcount`") from None
        failing, why = CYTOMETRY_FAILING, "its only FCS file is unreadable"
    else:
        ref, analyses = write_demo_batch(cyto.store)
        failing, why = FAILING_ANALYSIS, "its params.json names a file that is not there"
    click.echo(f"demo batch {ref.label} in {cyto.store.uri}: {len(analyses)} analyses "
               f"({failing} fails on purpose: {why})")
    plan = cyto.plan(ref.date, ref.batch, pipeline=pipeline, retries=retries)
    started = cyto.engine.start_run(plan, requested_by=_whoami())
    summary = follow(cyto, started.id)
    report(summary, cyto)
    excerpt = cyto.logs(started.id, failing, tail=5)
    click.echo(f"\nlog excerpt of {failing} (attempt {excerpt.attempt}, full log {excerpt.full_log}):")
    click.echo(excerpt.excerpt.text if excerpt.excerpt else "(no log)")
    click.echo(f"\nnext: `cyto status {started.id}`, `cyto logs {started.id} {failing}`, "
               f"`cyto report {started.id} --out DIR`")
    expected = summary.count(JobState.SUCCEEDED) == len(analyses) - 1 and summary.count(JobState.FAILED) == 1
    sys.exit(EXIT_OK if expected else EXIT_FAILED)


def _build_report(cyto: Cyto, run_id: str, out_dir: str | None = None) -> ReportResult | None:
    try:
        return cyto.report(run_id, out_dir)
    except (StoreError, OSError) as exc:
        click.echo(f"cyto: the report of run {run_id} could not be written: {exc}", err=True)
        return None


def _print_report(result: ReportResult | None) -> None:
    if result is None:
        return
    if result.headline:
        click.echo(f"  QC: {result.headline}")
    click.echo(f"  report: {location(result.uri)}")
    if result.local_path is not None:
        click.echo(f"  copy: {result.local_path}")


def location(uri: str) -> str:
    """A path for a local file, the URI otherwise."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    return uri


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
    cyto.poll()
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


def _whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@cli.command("split-fasta")
@click.argument("fasta_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--chunks", type=int, required=True, help="How many analyses to make.")
@click.option("--date", required=True, help="The batch's date, YYYY-MM-DD.")
@click.option("--batch", "batch_name", required=True, help="A new batch name.")
@friendly_errors
def split_fasta(fasta_file: str, chunks: int, date: str, batch_name: str) -> None:
    """Split a FASTA file at record boundaries into a new batch, one analysis per chunk.

    Example: cyto split-fasta reads.fa --chunks 5 --date 2018-12-05 --batch kmers-1
    """
    import warnings

    from bot import fasta
    from bot.layout import BatchRef

    cyto = open_session()
    ref = BatchRef(date, batch_name)
    if any(True for _ in cyto.store.list_children(ref.input_prefix)):
        raise UsageFailure(f"batch {ref.label} already exists; choose another --batch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fasta.FastaSplitWarning)
        try:
            written = fasta.write_split_batch(cyto.store, fasta_file, chunks, date, batch_name)
        except fasta.FastaError as exc:
            raise UsageFailure(str(exc)) from exc
    for warning in caught:
        click.echo(f"note: {warning.message}", err=True)
    for chunk in written:
        click.echo(f"{chunk.analysis}  {chunk.records} records, {chunk.residues} residues")
    click.echo(f"next: cyto run {date} {batch_name} --pipeline fasta-kmers --param k=4 --wait, then cyto merge RUN")


@cli.command()
@click.argument("run_id", metavar="RUN")
@friendly_errors
def merge(run_id: str) -> None:
    """Sum the k-mer tables of a finished fasta-kmers run into Output/DATE/BATCH/merged/."""
    from bot import fasta
    from bot.layout import BatchRef

    cyto = open_session()
    cyto.poll()
    summary = cyto.status(run_id)
    run_ = summary.run
    if run_.pipeline != "fasta-kmers":
        raise UsageFailure(f"run {run_id} ran {run_.pipeline}, not fasta-kmers: there is nothing to merge")
    if not summary.finished or summary.count(JobState.SUCCEEDED) != summary.total:
        missing = [j.analysis for j in cyto.db.jobs(run_id) if j.state != JobState.SUCCEEDED]
        raise UsageFailure(f"run {run_id} has {len(missing)} chunk(s) without a result "
                           f"({', '.join(missing[:5])}); retry them first")
    ref = BatchRef(run_.date, run_.batch)
    analyses = [j.analysis for j in cyto.db.jobs(run_id)]
    if "merged" in analyses:
        raise UsageFailure(f"batch {ref.label} has an analysis named 'merged'; its output would be overwritten")
    try:
        kmers, totals = fasta.merge_outputs(cyto.store.read_bytes, [ref.analysis(a).output_prefix for a in analyses])
    except fasta.FastaError as exc:
        raise UsageFailure(str(exc)) from exc
    target = f"{ref.output_prefix}merged/"
    cyto.store.write_bytes(f"{target}kmers.tsv", kmers.encode())
    cyto.store.write_bytes(f"{target}summary.tsv", totals.encode())
    click.echo(f"merged {len(analyses)} chunks into {cyto.store.uri_for(target)}")
    click.echo(totals.rstrip())


# -- commands from other modules (one line each) ----------------------------------------------
cli.add_command(__import__("handlers.serve", fromlist=["serve"]).serve)  # cyto serve: the Slack bot
cli.add_command(__import__("bot.doctor", fromlist=["doctor"]).doctor)  # cyto doctor: check the set-up


def main() -> None:
    cli(prog_name="cyto")


if __name__ == "__main__":
    main()
