"""`cyto split-fasta` and `cyto merge`: a FASTA file fanned out as a batch, and its k-mer tables summed."""

from __future__ import annotations

import click

from bot.cli.app import cli
from bot.cli.common import UsageFailure, friendly_errors, open_session
from bot.states import JobState


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
