"""Split a FASTA file into a batch of chunk analyses, and merge the chunks' k-mer counts back.

Pure library code for `cyto split-fasta` and `cyto merge`; it talks to a store only through the
callables it is given (`write(key, data)`, `read(key) -> bytes`).

Why chunking gives exact counts: the `fasta-kmers` pipeline never lets a k-mer span two records
(container/pipelines/fasta_kmers.py), so a file's k-mer counts are the sum of its records' counts.
`split_fasta` never splits a record, only groups whole records into chunks, hence the sum of the
chunks' tables (`merge_kmer_tables`) equals the table of one job over the whole file, and likewise
for the sequence and residue totals.

Too many chunks: asking for more chunks than the file has records gives one chunk per record and a
`FastaSplitWarning` (an empty chunk would be a job with nothing to count); callers that want to
say so compare `len(result)` with what they asked for.
"""

from __future__ import annotations

import heapq
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.layout import BatchRef, check_name

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
KMERS_FILE = "kmers.tsv"
SUMMARY_FILE = "summary.tsv"
KMERS_HEADER = "kmer\tcount"
SUMMARY_HEADER = "sequences\tresidues\tk"

Write = Callable[[str, bytes], None]
Read = Callable[[str], bytes]


class FastaError(ValueError):
    """A FASTA file, a chunk count or a k-mer table that cannot be used; the message says why."""


class FastaSplitWarning(UserWarning):
    """Fewer chunks were made than asked for, because the file has fewer records."""


class _HasWriteBytes(Protocol):
    def write_bytes(self, key: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class FastaRecord:
    header: str
    """The header line without its '>'."""
    text: bytes
    """The whole record as written to a chunk: header line, then sequence lines, each ending in LF."""
    residues: int
    """Non-white-space characters of the sequence lines (the pipeline's definition)."""

    @property
    def name(self) -> str:
        return self.header.split(maxsplit=1)[0] if self.header.strip() else ""


@dataclass(frozen=True)
class Summary:
    sequences: int
    residues: int
    k: int


@dataclass(frozen=True)
class WrittenChunk:
    analysis: str
    key: str
    records: int
    residues: int


# -- reading and splitting ------------------------------------------------------------------------


def parse_fasta(data: bytes, source: str = "FASTA data") -> list[FastaRecord]:
    """The records of a FASTA text; FastaError if there is none or data precedes the first header."""
    records: list[FastaRecord] = []
    header: bytes | None = None
    lines: list[bytes] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(b">"):
            if header is not None:
                records.append(_record(header, lines))
            header, lines = line, []
        elif line:
            if header is None:
                raise FastaError(
                    f"{source}, line {number}: sequence data before the first '>' header; is this a FASTA file?"
                )
            lines.append(line)
    if header is not None:
        records.append(_record(header, lines))
    if not records:
        raise FastaError(f"{source} holds no FASTA records (no line starts with '>')")
    return records


def _record(header: bytes, lines: list[bytes]) -> FastaRecord:
    residues = sum(len(b"".join(line.split())) for line in lines)
    text = b"".join(line + b"\n" for line in [header, *lines])
    return FastaRecord(header[1:].decode("utf-8", errors="replace"), text, residues)


def read_fasta(path: str | os.PathLike[str]) -> list[FastaRecord]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FastaError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_fasta(data, source=str(path))


def split_records(records: Sequence[FastaRecord], chunks: int) -> list[list[FastaRecord]]:
    """Group whole records into `chunks` groups of about equal residues, each in file order.

    Largest records first, each into the lightest group so far (ties: the group with fewer records,
    then the lower number), which keeps the heaviest group within 4/3 of the best possible.
    """
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise FastaError(f"the number of chunks must be a whole number of at least 1, got {chunks!r}")
    if not records:
        raise FastaError("there are no FASTA records to split")
    if chunks > len(records):
        warnings.warn(
            FastaSplitWarning(
                f"asked for {chunks} chunks but the file has only {len(records)} record(s); "
                f"making {len(records)} chunk(s), one record each"
            ),
            stacklevel=3,
        )
        chunks = len(records)
    heap = [(0, 0, index) for index in range(chunks)]
    members: list[list[int]] = [[] for _ in range(chunks)]
    by_size = sorted(range(len(records)), key=lambda i: (-records[i].residues, i))
    for position in by_size:
        load, count, index = heapq.heappop(heap)
        members[index].append(position)
        heapq.heappush(heap, (load + records[position].residues, count + 1, index))
    return [[records[i] for i in sorted(group)] for group in members]


def split_fasta(path: str | os.PathLike[str], chunks: int) -> list[list[FastaRecord]]:
    """The records of the FASTA file at `path` in at most `chunks` groups, balanced by residues."""
    return split_records(read_fasta(path), chunks)


def chunk_name(number: int, total: int) -> str:
    """`chunk-001` … (wider numbers when there are more than 999 chunks, so names sort)."""
    return f"chunk-{number:0{max(3, len(str(total)))}d}"


def chunk_file_name(fasta_path: str | os.PathLike[str]) -> str:
    """The file name inside each chunk folder: the original name, with a FASTA suffix if it lacks one."""
    name = Path(fasta_path).name
    if not name.lower().endswith(FASTA_SUFFIXES):
        name += ".fasta"
    return check_name(name, "FASTA file name")


def write_split_batch(
    target: Write | _HasWriteBytes | str | os.PathLike[str],
    fasta_path: str | os.PathLike[str],
    chunks: int,
    date: str,
    batch: str,
) -> list[WrittenChunk]:
    """Split the file and write one analysis folder per chunk: `Input/{date}/{batch}/chunk-001/<file>`.

    `target` is a `write(key, data)` callable, a store (anything with `write_bytes(key, data)`),
    or the root folder of a local store. It does not check whether the batch already exists.
    """
    ref = BatchRef(date, batch)
    file_name = chunk_file_name(fasta_path)
    groups = split_fasta(fasta_path, chunks)
    write = _writer(target)
    written = []
    for number, group in enumerate(groups, start=1):
        analysis = ref.analysis(chunk_name(number, len(groups)))
        key = f"{analysis.input_prefix}{file_name}"
        write(key, b"".join(record.text for record in group))
        written.append(WrittenChunk(analysis.name, key, len(group), sum(r.residues for r in group)))
    return written


def _writer(target: Write | _HasWriteBytes | str | os.PathLike[str]) -> Write:
    # A folder is tested first: pathlib.Path has a write_bytes() of its own, with another meaning.
    if isinstance(target, str | os.PathLike):
        root = Path(target)

        def write_file(key: str, data: bytes) -> None:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        return write_file
    write_bytes = getattr(target, "write_bytes", None)
    if callable(write_bytes):
        return write_bytes
    if callable(target):
        return target
    raise TypeError(f"cannot write through {target!r}: give write(key, data), a store or a folder")


# -- merging --------------------------------------------------------------------------------------


def merge_kmer_tables(tables: Iterable[str | bytes | os.PathLike[str]]) -> dict[str, int]:
    """Sum `kmer<TAB>count` tables into one dict, sorted by k-mer.

    Each table is a path (`os.PathLike`, or a `str` without a line break or tab), or the table's
    text (`bytes`, or a `str` holding a line break or tab).
    """
    totals: dict[str, int] = {}
    length: int | None = None
    seen = 0
    for table in tables:
        seen += 1
        text, source = _table_text(table, f"k-mer table {seen}")
        for kmer, count in _kmer_rows(text, source):
            if length is None:
                length = len(kmer)
            elif len(kmer) != length:
                raise FastaError(
                    f"{source}: k-mer {kmer!r} has length {len(kmer)}, others have {length}; "
                    "were the chunks counted with different k?"
                )
            totals[kmer] = totals.get(kmer, 0) + count
    if not seen:
        raise FastaError("no k-mer tables to merge")
    return dict(sorted(totals.items()))


def merge_summaries(tables: Iterable[str | bytes | os.PathLike[str]]) -> Summary:
    """Sum `sequences<TAB>residues<TAB>k` summaries; FastaError if their k differ."""
    summaries = [_summary(*_table_text(t, f"summary {n}")) for n, t in enumerate(tables, start=1)]
    if not summaries:
        raise FastaError("no summaries to merge")
    ks = sorted({s.k for s in summaries})
    if len(ks) > 1:
        raise FastaError(f"the chunks were counted with different k ({', '.join(map(str, ks))}); rerun them alike")
    return Summary(sum(s.sequences for s in summaries), sum(s.residues for s in summaries), ks[0])


def merge_outputs(read: Read, output_prefixes: Iterable[str]) -> tuple[str, str]:
    """Read each chunk's kmers.tsv and summary.tsv under its output prefix and sum them.

    `output_prefixes` are the chunk analyses' output folders, e.g. `Output/{date}/{batch}/chunk-001/`.
    Returns the merged (kmers.tsv text, summary.tsv text), in the pipeline's own format, so that
    they are byte for byte what one job over the whole file writes.
    """
    prefixes = [p if p.endswith("/") else p + "/" for p in output_prefixes]
    if not prefixes:
        raise FastaError("no chunk outputs to merge")
    kmers = merge_kmer_tables(_read_text(read, p + KMERS_FILE) for p in prefixes)
    summary = merge_summaries(_read_text(read, p + SUMMARY_FILE) for p in prefixes)
    return format_kmer_table(kmers), format_summary(summary)


def format_kmer_table(counts: Mapping[str, int]) -> str:
    rows = (f"{kmer}\t{count}\n" for kmer, count in sorted(counts.items()))
    return f"{KMERS_HEADER}\n" + "".join(rows)


def format_summary(summary: Summary) -> str:
    return f"{SUMMARY_HEADER}\n{summary.sequences}\t{summary.residues}\t{summary.k}\n"


def _read_text(read: Read, key: str) -> bytes:
    try:
        return read(key)
    except Exception as exc:  # any store's "missing" or "unreachable": name the key, keep the cause
        raise FastaError(f"cannot read {key} (did that chunk succeed?): {exc}") from exc


def _table_text(table: str | bytes | os.PathLike[str], label: str) -> tuple[str, str]:
    if isinstance(table, bytes):
        return table.decode("utf-8"), label
    if isinstance(table, str) and ("\n" in table or "\t" in table):
        return table, label
    path = Path(table)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise FastaError(f"cannot read {path}: {exc.strerror}") from exc


def _kmer_rows(text: str, source: str) -> Iterable[tuple[str, int]]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != KMERS_HEADER:
        raise FastaError(f"{source} is not a k-mer table: its first line should be {KMERS_HEADER!r}")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        kmer, _, count = line.partition("\t")
        if not kmer or not count.strip().isdigit():
            raise FastaError(f"{source}, line {number}: expected kmer<TAB>count, got {line!r}")
        yield kmer, int(count)


def _summary(text: str, source: str) -> Summary:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or lines[0].strip() != SUMMARY_HEADER:
        raise FastaError(f"{source} is not a summary: expected the line {SUMMARY_HEADER!r} and one row")
    fields = lines[1].split("\t")
    if len(fields) != 3 or not all(f.strip().isdigit() for f in fields):
        raise FastaError(f"{source}: expected three whole numbers, got {lines[1]!r}")
    sequences, residues, k = (int(f) for f in fields)
    return Summary(sequences, residues, k)
