"""The `fasta-kmers` pipeline: sequences, residues and k-mer counts of one FASTA chunk, in R.

Input: the analysis folder's `*.fa`, `*.fasta` and `*.fna` files (any case, sub-folders too).
Parameter: `k`, an integer from 1 to 12 (default 4), checked by `check_params` before R starts
(and by the bot before the run is submitted); any other key is refused.
Outputs:
    kmers.tsv    `kmer<TAB>count`, header line first, one row per k-mer that occurs, sorted by k-mer
    summary.tsv  `sequences<TAB>residues<TAB>k`, header line and one row

Counting rules (fasta_kmers.R does the work):
- a record is a `>` header line plus the sequence lines up to the next header; blank lines and
  white space are ignored; sequence data before the first header is an error;
- residues are all other characters of the sequence lines, N and IUPAC codes included;
- k-mers are read case-insensitively and reported upper-case; a k-mer that contains any character
  other than A, C, G or T (N, IUPAC ambiguity codes, gaps) is skipped, and the log says how many;
- k-mers never span two records, so counts add up over records, and a file split at record
  boundaries (bot/fasta.py) gives, summed over its chunks, exactly the counts of the whole file.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from container.pipelines import ParameterError, PipelineContext, PipelineError, checked_params, unknown_parameters
from container.pipelines.rscript import run_rscript

R_SCRIPT = Path(__file__).with_name("fasta_kmers.R")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
DEFAULT_K = 4
MIN_K, MAX_K = 1, 12
KNOWN_PARAMS = frozenset({"k"})


def run(ctx: PipelineContext) -> dict[str, Any]:
    k = checked_params(check_params, ctx.params, ctx.input_dir)
    files = find_fasta_files(ctx.input_dir)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    ctx.log.info("counting %d-mers in %d FASTA file(s)", k, len(files))
    run_rscript(
        R_SCRIPT,
        [str(k), str(ctx.output_dir), *(str(f) for f in files)],
        log=ctx.log,
        cwd=ctx.output_dir,
        label="k-mer counting",
    )
    summary = read_summary(ctx.output_dir / "summary.tsv")
    return {**summary, "distinct_kmers": _count_rows(ctx.output_dir / "kmers.tsv"), "files": len(files)}


def check_params(params: Mapping[str, Any]) -> int:
    """The fasta-kmers parameter check (pure; the bot runs it at plan time too): `k`, nothing else."""
    unknown = set(params) - KNOWN_PARAMS
    if unknown:
        raise unknown_parameters(unknown, KNOWN_PARAMS)
    return parse_k(params)


def parse_k(params: Mapping[str, Any]) -> int:
    """`k` from the run's parameters: an integer 1..12 (a string of digits is accepted too)."""
    value = params.get("k", DEFAULT_K)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_K <= value <= MAX_K:
        raise ParameterError(f"parameter k must be an integer from {MIN_K} to {MAX_K}, got {value!r}")
    return value


def find_fasta_files(input_dir: Path) -> list[Path]:
    files = sorted(
        p
        for p in input_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in FASTA_SUFFIXES and not p.name.startswith(".")
    )
    if files:
        return files
    present = sorted(p.relative_to(input_dir).as_posix() for p in input_dir.rglob("*") if p.is_file())
    found = f"it holds: {', '.join(present[:10])}" if present else "it is empty"
    raise PipelineError(f"no FASTA file ({', '.join('*' + s for s in FASTA_SUFFIXES)}) in the analysis folder; {found}")


def read_summary(path: Path) -> dict[str, int]:
    try:
        with path.open(newline="") as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        return {name: int(row[name]) for name in ("sequences", "residues", "k")}
    except (OSError, StopIteration, KeyError, ValueError) as exc:
        raise PipelineError(f"the k-mer counter wrote no readable summary.tsv: {exc}") from exc


def _count_rows(path: Path) -> int:
    with path.open("rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)
