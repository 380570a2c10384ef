"""`cyto run`, `runs`, `status`, `logs`, `retry` and `cancel`: start and follow runs."""

from __future__ import annotations

import json
import sys
import time

import click

from bot.api import Cyto, Plan
from bot.cli import completion
from bot.cli.app import cli
from bot.cli.common import (
    UsageFailure,
    checked_resources,
    friendly_errors,
    json_option,
    open_session,
    parse_params,
    resource_options,
    whoami,
)
from bot.cli.follow import finish, follow, reconcile, report
from bot.states import JobState


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
    started = cyto.start(plan, whoami(), allow_concurrent=allow_concurrent)
    if as_json and not wait:  # with --wait, the one JSON document is the final status
        click.echo(json.dumps({"version": 1, "run_id": started.id, "analyses": len(plan.analyses),
                               "output": cyto.output_uri(started)}))
    elif not as_json:
        click.echo(f"run {started.id}: {len(plan.analyses)} analyses of {plan.ref.label} submitted "
                   f"({plan.pipeline}, {plan.resources.vcpus:g} vCPU, {plan.resources.memory_mib} MiB)")
        if started.outputs_scoped:
            click.echo(f"another run of {plan.ref.label} is unfinished: this run writes to "
                       f"{cyto.output_uri(started)}")
    if wait:
        sys.exit(finish(cyto, follow(cyto, started.id, out=sys.stderr if as_json else None), as_json, followed=True))


def show_plan(cyto: Cyto, plan: Plan, as_json: bool) -> None:
    from bot import dry_run
    from bot.sizes import format_duration, format_mib

    preview = cyto.dry_run(plan)
    analyses, guess = preview.analyses, preview.estimate
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
    cyto.get_run(run_id)
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
    retried = cyto.retry(run_id, analysis, by=whoami(), **overrides)
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
    if cyto.cancel(run_id, by=whoami()):
        # A run with nothing left at the executor (or one still held, never submitted) is cancelled at once.
        finished = cyto.get_run(run_id).state.is_finished
        click.echo(f"run {run_id}: {'cancelled' if finished else 'cancelling'}")
    else:
        click.echo(f"run {run_id} is {cyto.get_run(run_id).state.value.lower()}: nothing to cancel")
