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

from bot import __version__, completion, defaults
from bot.api import Cyto
from bot.engine import EngineError, RunSummary
from bot.executors import ExecutorError
from bot.layout import LayoutError
from bot.ledger import DatabaseError
from bot.progress import RunProgress, summary_lines
from bot.report import ReportResult
from bot.settings import ConfigError, Settings
from bot.sizes import format_duration, format_mib
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


def parse_params(pairs: tuple[str, ...], params_json: str | None, params_file: str | None = None) -> dict[str, Any]:
    """--params-file, then --params, then each --param: a later one wins for the same key."""
    params: dict[str, Any] = read_params_file(params_file) if params_file else {}
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


def read_params_file(path: str) -> dict[str, Any]:
    """A JSON or YAML file holding one object of pipeline parameters."""
    import yaml

    try:
        text = open(path, encoding="utf-8").read()  # noqa: SIM115 - read at once
    except OSError as exc:
        raise UsageFailure(f"--params-file {path}: {exc.strerror or exc}") from None
    try:
        loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.endswith(".json") else "YAML or JSON"
        raise UsageFailure(f"--params-file {path} is not valid {kind}: {' '.join(str(exc).split())}") from None
    if not isinstance(loaded, dict):
        raise UsageFailure(f"--params-file {path} must hold one object of KEY: VALUE pairs, "
                           f"not {type(loaded).__name__}")
    return loaded


def checked_resources(vcpus: float | None = None, memory: str | None = None, storage: str | None = None,
                      timeout: str | None = None, retries: int | None = None) -> dict[str, Any]:
    """The resource options as the engine's keyword arguments, each parsed and range-checked with
    the option's own name in the message (`--memory 64 is out of range: …`)."""
    from bot.sizes import parse_resources

    values, errors = parse_resources({"vcpus": vcpus, "memory": memory, "storage": storage, "timeout": timeout,
                                      "retries": retries})
    if errors:
        name, message = next(iter(errors.items()))
        raise UsageFailure(f"--{name} {message}")
    return values


def resource_options(func: F) -> F:
    options = [
        click.option("--pipeline", help=f"Pipeline to run (default: CYTO_DEFAULT_PIPELINE or {defaults.PIPELINE})."),
        click.option("--vcpus", type=float, help=f"vCPUs per job (default {defaults.VCPUS:g})."),
        click.option("--memory", metavar="SIZE",
                     help=f"Memory per job: 4096 (MiB), 512M or 4G (default {format_mib(defaults.MEMORY_MIB)})."),
        click.option("--storage", metavar="SIZE",
                     help=f"Scratch storage per job: 20 (GiB) or 1T (default {defaults.STORAGE_GIB}G)."),
        click.option("--timeout", metavar="DURATION", help="Time before a job is stopped: 3600 (s), 90m or 2h "
                     f"(default {format_duration(defaults.TIMEOUT_S)})."),
        click.option("--retries", type=int,
                     help=f"Automatic retries of a failed analysis (default {defaults.RETRIES})."),
        click.option("--param", "param_pairs", multiple=True, metavar="KEY=VALUE",
                     help="A pipeline parameter (repeatable); VALUE is JSON or a string."),
        click.option("--params", "params_json", metavar="JSON", help="Pipeline parameters as a JSON object."),
        click.option("--params-file", type=click.Path(dir_okay=False),
                     help="Pipeline parameters from a JSON or YAML file (--params and --param override it)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON (a stable shape, see README.md \"Scripting\") instead of text.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cyto")
def cli() -> None:
    """cyto-bot: run every analysis of a batch as its own job, and follow the run.

    Configuration comes from environment variables (CYTO_STORE, CYTO_EXECUTOR, CYTO_DB, ...);
    with none set, the store is ~/cyto-data, jobs run as local processes and runs are kept in the
    user's state directory (`cyto doctor` prints where).
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


def reconcile(cyto: Cyto) -> None:
    """Bring the ledger up to date (one poll) before showing it; a failure to reach the executor
    is a note, and the ledger is shown as it stands."""
    try:
        cyto.poll()
    except (ExecutorError, StoreError) as exc:
        click.echo(f"note: showing the run database as it stands; it could not be brought up to date: {exc}",
                   err=True)


def report(summary: RunSummary, cyto: Cyto | None = None) -> int:
    """Print the summary; for a finished run followed to its end, build its report and say where it is."""
    for line in summary_lines(summary):
        click.echo(line)
    if cyto is not None and summary.finished:
        _print_report(_build_report(cyto, summary.run.id))
    return exit_code(summary)


@cli.command()
@click.argument("date", shell_complete=completion.complete_date)
@click.argument("batch", shell_complete=completion.complete_batch)
@resource_options
@click.option("--wait/--no-wait", default=False, help="Follow the run until it finishes.")
@click.option("--dry-run", is_flag=True, help="Print the plan (analyses, parameters, resources, estimated "
              "job-hours) and submit nothing.")
@click.option("--allow-concurrent", is_flag=True,
              help="Start even while another run of the batch is unfinished; this run then writes to its own "
                   "Output/DATE/BATCH.run-RUN/ folder.")
@json_option
@friendly_errors
def run(date: str, batch: str, pipeline: str | None, vcpus: float | None, memory: str | None,
        storage: str | None, timeout: str | None, retries: int | None, param_pairs: tuple[str, ...],
        params_json: str | None, params_file: str | None, wait: bool, dry_run: bool, allow_concurrent: bool,
        as_json: bool) -> None:
    """Submit one job per analysis of Input/DATE/BATCH/.

    Refused (exit 2, nothing recorded) while another run of the batch is unfinished, unless
    --allow-concurrent.

    Example: cyto run 2018-12-05 batch-7 --pipeline wordcount --memory 4G --timeout 2h --wait
    """
    resources = checked_resources(vcpus, memory, storage, timeout, retries)
    params = parse_params(param_pairs, params_json, params_file)
    cyto = open_session()
    plan = cyto.plan(date, batch, pipeline=pipeline, params=params, **resources)
    if dry_run:
        show_plan(cyto, plan, as_json)
        return
    started = cyto.engine.start_run(plan, requested_by=_whoami(), allow_concurrent=allow_concurrent)
    if as_json and not wait:  # with --wait, the one JSON document is the final status
        click.echo(json.dumps({"version": 1, "run_id": started.id, "analyses": len(plan.analyses),
                               "output": cyto.engine.output_uri(started)}))
    elif not as_json:
        click.echo(f"run {started.id}: {len(plan.analyses)} analyses of {plan.ref.label} submitted "
                   f"({plan.pipeline}, {plan.resources.vcpus:g} vCPU, {plan.resources.memory_mib} MiB)")
        if started.outputs_scoped:
            click.echo(f"another run of {plan.ref.label} is unfinished: this run writes to "
                       f"{cyto.engine.output_uri(started)}")
    if wait:
        sys.exit(finish(cyto, follow(cyto, started.id, out=sys.stderr if as_json else None), as_json, followed=True))


def finish(cyto: Cyto, summary: RunSummary, as_json: bool, followed: bool = False) -> int:
    """Show a run's summary, as text or as the `status --json` shape; return the exit code. A run
    followed to its end (--wait) also gets its report built, and the text says where it is."""
    if not as_json:
        return report(summary, cyto if followed else None)
    from bot.json_views import status_view

    click.echo(json.dumps(status_view(summary, cyto.jobs(summary.run.id)), indent=2))
    return exit_code(summary)


def exit_code(summary: RunSummary) -> int:
    return EXIT_OK if summary.count(JobState.FAILED) == 0 and summary.count(JobState.CANCELLED) == 0 \
        else EXIT_FAILED


def show_plan(cyto: Cyto, plan: Any, as_json: bool) -> None:
    from bot import dry_run
    from bot.sizes import format_duration, format_mib

    analyses = dry_run.analyses_with_params(cyto.store, plan)
    history = [cyto.status(r.id) for r in cyto.runs(dry_run.HISTORY_RUNS) if r.pipeline == plan.pipeline]
    guess = dry_run.estimate(plan, history)
    if as_json:
        click.echo(json.dumps(dry_run.plan_view(plan, analyses, guess), indent=2))
        return
    r = plan.resources
    click.echo(f"dry run, nothing submitted: {len(analyses)} analyses of {plan.ref.label}, pipeline {plan.pipeline}")
    click.echo(f"each job: {r.vcpus:g} vCPU, {format_mib(r.memory_mib)} memory, {r.storage_gib}G storage, "
               f"timeout {format_duration(r.timeout_s)}, {r.retries} automatic retries")
    for a in analyses:
        note = "  (params.json)" if a.has_params_file else ""
        click.echo(f"  {a.name}  {json.dumps(a.params, sort_keys=True)}{note}")
    if guess.job_hours is None:
        click.echo(f"estimate: no finished {plan.pipeline} job in the run database yet; at most "
                   f"{guess.max_job_hours:.2f} job-hours if every job ran to its timeout")
    else:
        click.echo(f"estimate: {guess.jobs} jobs × {guess.median_job_s:.0f} s (median of {guess.history_jobs} "
                   f"earlier {plan.pipeline} jobs) ≈ {guess.job_hours:.2f} job-hours, {guess.vcpu_hours:.2f} "
                   f"vCPU-hours; at most {guess.max_job_hours:.2f} job-hours (the timeout)")


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many recent runs to list.")
@json_option
@friendly_errors
def runs(limit: int, as_json: bool) -> None:
    """List recent runs, newest first (after bringing the run database up to date)."""
    cyto = open_session()
    reconcile(cyto)
    found = cyto.runs(limit)
    if as_json:
        from bot.json_views import runs_view

        click.echo(json.dumps(runs_view(cyto.status(r.id) for r in found), indent=2))
        return
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
@click.argument("run_id", metavar="RUN", shell_complete=completion.complete_run)
@click.option("--wait/--no-wait", default=False, help="Follow the run until it finishes.")
@json_option
@friendly_errors
def status(run_id: str, wait: bool, as_json: bool) -> None:
    """Show a run's counts by state, durations and failure reasons (polls once first).

    After a crash or a restart, `cyto status RUN --wait` resumes following the run.
    """
    cyto = open_session()
    cyto.engine.get_run(run_id)
    if wait:
        sys.exit(finish(cyto, follow(cyto, run_id, out=sys.stderr if as_json else None), as_json, followed=True))
    reconcile(cyto)
    sys.exit(finish(cyto, cyto.status(run_id), as_json))


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=completion.complete_run)
@click.argument("analysis", shell_complete=completion.complete_analysis)
@click.option("--tail", default=15, show_default=True, help="How many last lines to show.")
@click.option("--attempt", type=int, help="Which attempt (default: the latest that ran).")
@json_option
@friendly_errors
def logs(run_id: str, analysis: str, tail: int, attempt: int | None, as_json: bool) -> None:
    """Show the part of an analysis's log worth reading: the first error and the last lines."""
    cyto = open_session()
    found = cyto.logs(run_id, analysis, attempt, tail=tail)
    if as_json:
        from bot.json_views import logs_view

        click.echo(json.dumps(logs_view(run_id, found), indent=2))
        return
    click.echo(f"{analysis}, attempt {found.attempt} (full log: {found.full_log})")
    if found.explanation:
        click.echo(found.explanation)
    if found.excerpt is None:
        click.echo("no log yet")
    else:
        click.echo(found.excerpt.text)


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=completion.complete_run)
@click.argument("analysis", required=False, shell_complete=completion.complete_analysis)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed analysis of the run.")
@click.option("--memory", metavar="SIZE", help="Memory for the new attempt: 4096 (MiB), 512M or 8G.")
@click.option("--vcpus", type=float, help="vCPUs for the new attempt.")
@click.option("--timeout", metavar="DURATION", help="Time limit for the new attempt: 3600 (s), 90m or 2h.")
@click.option("--wait/--no-wait", default=False, help="Follow the run until it finishes.")
@friendly_errors
def retry(run_id: str, analysis: str | None, all_failed: bool, memory: str | None, vcpus: float | None,
          timeout: str | None, wait: bool) -> None:
    """Retry one failed analysis of a run, or all failed ones with --failed.

    Example: cyto retry 3fa2c1 A05 --timeout 2h --memory 8G
    """
    if bool(analysis) == all_failed:
        raise UsageFailure("name one ANALYSIS to retry, or pass --failed to retry every failed analysis")
    overrides = checked_resources(vcpus=vcpus, memory=memory, timeout=timeout)
    cyto = open_session()
    retried = cyto.retry(run_id, analysis, by=_whoami(), **overrides)
    if not retried:
        click.echo(f"run {run_id}: nothing to retry")
    else:
        click.echo(f"run {run_id}: retrying {', '.join(retried)}")
    if wait:
        sys.exit(report(follow(cyto, run_id), cyto))


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=completion.complete_run)
@friendly_errors
def cancel(run_id: str) -> None:
    """Cancel a run: queued jobs are dropped, running ones stopped."""
    cyto = open_session()
    if cyto.cancel(run_id, by=_whoami()):
        # A run with nothing left at the executor (or one still held, never submitted) is cancelled at once.
        finished = cyto.engine.get_run(run_id).state.is_finished
        click.echo(f"run {run_id}: {'cancelled' if finished else 'cancelling'}")
    else:
        click.echo(f"run {run_id} is {cyto.engine.get_run(run_id).state.value.lower()}: nothing to cancel")


@cli.command()
@click.argument("date", required=False, shell_complete=completion.complete_date)
@json_option
@friendly_errors
def batches(date: str | None, as_json: bool) -> None:
    """List the dates in the store, or the batches of DATE with their number of analyses."""
    from bot import catalog, json_views
    from bot.layout import BatchRef, parse_date

    cyto = open_session()
    cyto.store.check()
    if date is None:
        by_date = {d: cyto.batches(d) for d in cyto.dates()}
        if as_json:
            click.echo(json.dumps(json_views.dates_view(by_date), indent=2))
            return
        if not by_date:
            click.echo(f"{cyto.store.uri} has no Input/YYYY-MM-DD/ folders yet")
        for d, names in by_date.items():
            click.echo(f"{d}  {len(names)} batch{'es' if len(names) != 1 else ''}: {', '.join(names[:5])}"
                       f"{' …' if len(names) > 5 else ''}")
        return
    date = parse_date(date)
    counts = {name: sum(1 for _ in catalog.iter_analyses(cyto.store, BatchRef(date, name)))
              for name in cyto.batches(date)}
    if as_json:
        click.echo(json.dumps(json_views.batches_view(date, counts), indent=2))
        return
    if not counts:
        click.echo(f"no batches on {date}")
    for name, count in counts.items():
        click.echo(f"{name}  {count} analys{'es' if count != 1 else 'is'}")


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
        click.echo(f"{f.analysis}/{f.relative}  {_bytes(f.size)}  {f.uri}")


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
                  console=_stderr_console(), transient=True) as bar:
        task = bar.add_task(f"{len(files)} files", total=total)
        written = fetch(cyto.store, files, Path(dest), lambda n: bar.advance(task, n))
    click.echo(f"downloaded {len(written)} files ({_bytes(total)}) of run {run_id} to {Path(dest).resolve()}")


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


def _bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:g} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@cli.command()
@click.option("--pipeline", type=click.Choice(["cytometry", "wordcount"]), default=defaults.PIPELINE, show_default=True,
              help="The cytometry plate, or the word-count batch.")
@click.option("--retries", default=1, show_default=True, help="Automatic retries of a failing analysis.")
@click.option("--yes", "confirmed", is_flag=True, help="Write the demo batch even when the store is an S3 bucket.")
@friendly_errors
def demo(pipeline: str, retries: int, confirmed: bool) -> None:
    """Create a sample batch (one analysis fails on purpose), run it and show the result.

    The cytometry demo is a small plate of synthetic FCS files (debris, doublets, a spillover matrix,
    a drifting well, a gap in Time, a well with too few events, an unreadable file); it ends with the
    QC verdicts and where the run report is. With an S3 store (the lab's bucket) it refuses unless
    --yes: the demo would add a batch to it.
    """
    from bot.demo import CYTOMETRY_FAILING, FAILING_ANALYSIS, write_cytometry_batch, write_demo_batch

    settings = Settings.from_env()
    if settings.store.startswith("s3://") and not confirmed:
        raise UsageFailure(f"the store is the bucket {settings.store}: the demo would write a batch to its Input/ and "
                           "run it there; pass --yes to do that, or run it on a local folder "
                           "(env -u CYTO_STORE -u CYTO_EXECUTOR cyto demo)")
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
    from bot.engine import run_layout

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
    ref = run_layout(run_)
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


# -- the Slack front end: the CLI imports handlers/ in these two commands only -------------------
@cli.command()
@click.option("--http", "use_http", is_flag=True,
              help="Serve Slack's HTTP requests on /slack/events instead of Socket Mode.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on with --http.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on with --http.")
def serve(use_http: bool, host: str, port: int) -> None:
    """Run the Slack bot and the poll scheduler; resumes every unfinished run on start.

    Needs SLACK_BOT_TOKEN, and SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (--http).
    Example: `cyto serve --http --port 3000`
    """
    from handlers.serve import StartFailure
    from handlers.serve import serve as serve_bot

    try:
        serve_bot(use_http, host, port)
    except StartFailure as exc:
        raise UsageFailure(str(exc)) from None


@cli.command()
@click.option("--no-slack", "skip_slack", is_flag=True,
              help="Skip the Slack checks (CLI-only use; implied when no SLACK_* token is set).")
def doctor(skip_slack: bool) -> None:
    """Check the configuration against the live services, one line per check.

    Exit codes: 0 every check passed, 1 a service or set-up check failed, 2 the configuration
    itself is invalid (an environment variable with a bad value).
    """
    import os

    from bot.doctor import CONFIG_FIX, SLACK_NOT_CHECKED, Check, render, run_checks, slack_configured, verdict

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        click.echo(Check("Configuration", False, str(exc), CONFIG_FIX).line())
        sys.exit(EXIT_USAGE)
    slack = not skip_slack and slack_configured(os.environ)
    front_end = []
    if slack:
        from handlers.slack_check import SLACK_CHECKS

        front_end.append(SLACK_CHECKS)
    checks = run_checks(settings, front_end=front_end)
    click.echo(render(checks))
    if not slack and not skip_slack:
        click.echo(SLACK_NOT_CHECKED)
    line, code = verdict(checks)
    click.echo(line)
    sys.exit(code)


def main() -> None:
    cli(prog_name="cyto")


if __name__ == "__main__":
    main()
