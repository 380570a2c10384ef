"""The FASTA use cases on a store and a run: split a file into a new batch (one chunk analysis each),
and merge a finished `fasta-kmers` run's chunk tables into `Output/{date}/{batch}/merged/`.

`bot/fasta.py` holds the pure splitting and summing; this module checks the run and the batch and
reads and writes the store. Front ends reach it through `Cyto.split_fasta` and `Cyto.merge_fasta`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from bot import fasta
from bot.fasta import FastaError, WrittenChunk
from bot.layout import BatchRef
from bot.ledger import Job, Run
from bot.states import JobState
from bot.store import Store

PIPELINE = "fasta-kmers"
MERGED = "merged"  # the analysis-like folder the merged tables go to


@dataclass(frozen=True)
class FastaSplit:
    chunks: list[WrittenChunk]
    notes: list[str]  # e.g. fewer chunks than asked for: the file has fewer records


@dataclass(frozen=True)
class FastaMerge:
    chunks: int
    uri: str  # the merged/ folder
    summary: str  # the merged summary.tsv text


def split_into_new_batch(store: Store, fasta_path: str | os.PathLike[str], chunks: int, date: str,
                         batch: str) -> FastaSplit:
    """Split the file at record boundaries into `Input/{date}/{batch}/chunk-NNN/`; a batch that exists
    already is refused (FastaError), nothing written."""
    ref = BatchRef(date, batch)
    if any(True for _ in store.list_children(ref.input_prefix)):
        raise FastaError(f"batch {ref.label} already exists; choose another batch name")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fasta.FastaSplitWarning)
        written = fasta.write_split_batch(store, fasta_path, chunks, date, batch)
    return FastaSplit(written, [str(w.message) for w in caught if issubclass(w.category, fasta.FastaSplitWarning)])


def merge_finished_run(store: Store, run: Run, layout: BatchRef, jobs: Sequence[Job]) -> FastaMerge:
    """Sum the k-mer tables of a fasta-kmers run whose every chunk succeeded; FastaError says why not."""
    if run.pipeline != PIPELINE:
        raise FastaError(f"run {run.id} ran {run.pipeline}, not {PIPELINE}: there is nothing to merge")
    missing = [j.analysis for j in jobs if j.state != JobState.SUCCEEDED]
    if not run.state.is_finished or missing:
        raise FastaError(f"run {run.id} has {len(missing)} chunk(s) without a result "
                         f"({', '.join(missing[:5])}); retry them first")
    analyses = [j.analysis for j in jobs]
    if MERGED in analyses:
        raise FastaError(f"batch {layout.label} has an analysis named {MERGED!r}; its output would be overwritten")
    kmers, totals = fasta.merge_outputs(store.read_bytes, [layout.analysis(a).output_prefix for a in analyses])
    target = f"{layout.output_prefix}{MERGED}/"
    store.write_bytes(f"{target}{fasta.KMERS_FILE}", kmers.encode())
    store.write_bytes(f"{target}{fasta.SUMMARY_FILE}", totals.encode())
    return FastaMerge(len(analyses), store.uri_for(target), totals)
