"""`cyto demo`: a sample batch, run and shown from start to end."""

from __future__ import annotations

import sys

import click

from bot import defaults
from bot.cli.app import cli
from bot.cli.common import EXIT_FAILED, EXIT_OK, UsageFailure, friendly_errors, open_session, whoami
from bot.cli.follow import follow, report
from bot.settings import Settings
from bot.states import JobState


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
    from bot.demo import CYTOMETRY_FAILING, FAILING_ANALYSIS

    settings = Settings.from_env()
    if settings.store.startswith("s3://") and not confirmed:
        raise UsageFailure(f"the store is the bucket {settings.store}: the demo would write a batch to its Input/ and "
                           "run it there; pass --yes to do that, or run it on a local folder "
                           "(env -u CYTO_STORE -u CYTO_EXECUTOR cyto demo)")
    cyto = open_session()
    if pipeline == "cytometry":
        try:
            ref, analyses = cyto.write_demo_batch(pipeline)
        except RuntimeError as exc:
            raise UsageFailure(f"{exc}; or try `cyto demo --pipeline wordcount`") from None
        failing, why = CYTOMETRY_FAILING, "its only FCS file is unreadable"
    else:
        ref, analyses = cyto.write_demo_batch(pipeline)
        failing, why = FAILING_ANALYSIS, "its params.json names a file that is not there"
    click.echo(f"demo batch {ref.label} in {cyto.store_uri}: {len(analyses)} analyses "
               f"({failing} fails on purpose: {why})")
    plan = cyto.plan(ref.date, ref.batch, pipeline=pipeline, retries=retries)
    started = cyto.start(plan, whoami())
    summary = follow(cyto, started.id)
    report(summary, cyto)
    excerpt = cyto.logs(started.id, failing, tail=5)
    click.echo(f"\nlog excerpt of {failing} (attempt {excerpt.attempt}, full log {excerpt.full_log}):")
    click.echo(excerpt.excerpt.text if excerpt.excerpt else "(no log)")
    click.echo(f"\nnext: `cyto status {started.id}`, `cyto logs {started.id} {failing}`, "
               f"`cyto report {started.id} --out DIR`")
    expected = summary.count(JobState.SUCCEEDED) == len(analyses) - 1 and summary.count(JobState.FAILED) == 1
    sys.exit(EXIT_OK if expected else EXIT_FAILED)
