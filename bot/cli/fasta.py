"""`cyto split-fasta` and `cyto merge`: a FASTA file fanned out as a batch, and its k-mer tables summed."""

from __future__ import annotations

import click

from bot.cli.app import cli
from bot.cli.common import friendly_errors, open_session


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
    split = open_session().split_fasta(fasta_file, chunks, date, batch_name)
    for note in split.notes:
        click.echo(f"note: {note}", err=True)
    for chunk in split.chunks:
        click.echo(f"{chunk.analysis}  {chunk.records} records, {chunk.residues} residues")
    click.echo(f"next: cyto run {date} {batch_name} --pipeline fasta-kmers --param k=4 --wait, then cyto merge RUN")


@cli.command()
@click.argument("run_id", metavar="RUN")
@friendly_errors
def merge(run_id: str) -> None:
    """Sum the k-mer tables of a finished fasta-kmers run into Output/DATE/BATCH/merged/."""
    cyto = open_session()
    cyto.poll()
    merged = cyto.merge_fasta(run_id)
    click.echo(f"merged {merged.chunks} chunks into {merged.uri}")
    click.echo(merged.summary.rstrip())
