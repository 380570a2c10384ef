"""FASTA splitting and merging (bot/fasta.py) and the fasta-kmers pipeline (R)."""

from __future__ import annotations

import logging
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot import fasta
from bot.layout import LayoutError
from container.pipelines import ParameterError, PipelineContext, PipelineError, fasta_kmers, load

needs_r = pytest.mark.skipif(
    shutil.which("Rscript") is None,
    reason="Rscript is not installed here (CI and the job image install r-base-core)",
)

# Hand-checkable: s1 is ACGTACGT over two lines (ACGT x2, CGTA, GTAC, TACG); s2 NNACGTN gives only
# ACGT (NNAC, NACG, CGTN hold N); 'empty' has no sequence; s3 ACGTACGTA gives ACGT x2, CGTA x2,
# GTAC, TACG. Lower case and a CRLF line count like upper case.
SMALL = b">s1 first\nACGTac\ngt\n\n>s2\nNNACGTN\r\n>empty\n>s3\nacgtACGTA\n"
SMALL_KMERS = "kmer\tcount\nACGT\t5\nCGTA\t3\nGTAC\t2\nTACG\t2\n"
SMALL_SUMMARY = "sequences\tresidues\tk\n4\t24\t4\n"


def reference_counts(records: list[fasta.FastaRecord], k: int) -> Counter[str]:
    """The counting rules, written plainly in Python, to check the R implementation against."""
    counts: Counter[str] = Counter()
    for record in records:
        sequence = b"".join(record.text.split(b"\n")[1:]).decode().upper()
        for i in range(len(sequence) - k + 1):
            kmer = sequence[i : i + k]
            if set(kmer) <= set("ACGT"):
                counts[kmer] += 1
    return counts


def random_fasta(seed: int, records: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for number in range(records):
        length = rng.choice([0, 3, 50, 400, 2500])
        sequence = "".join(rng.choices("ACGTacgtN", weights=[8, 8, 8, 8, 1, 1, 1, 1, 1], k=length))
        lines = [sequence[i : i + 60] for i in range(0, len(sequence), 60)]
        out.append("\n".join([f">r{number} random", *lines]))
    return ("\n".join(out) + "\n").encode()


def context(input_dir: Path, output_dir: Path, params: dict[str, Any] | None = None) -> PipelineContext:
    return PipelineContext(input_dir, output_dir, params or {}, logging.getLogger("test.fasta"))


# -- parsing and splitting ------------------------------------------------------------------------


def test_parse_records_and_residues() -> None:
    records = fasta.parse_fasta(SMALL)
    assert [r.name for r in records] == ["s1", "s2", "empty", "s3"]
    assert [r.residues for r in records] == [8, 7, 0, 9]
    assert records[0].text == b">s1 first\nACGTac\ngt\n"
    assert records[0].header == "s1 first"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no FASTA records"),
        (b"\n\n", "no FASTA records"),
        (b"ACGT\n>a\nAC\n", "line 1: sequence data before the first '>' header"),
    ],
)
def test_parse_refuses_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(fasta.FastaError, match=message):
        fasta.parse_fasta(data, source="x.fa")


def test_split_balances_residues_and_keeps_records_whole(tmp_path: Path) -> None:
    path = tmp_path / "x.fa"
    sizes = [100, 90, 50, 40, 30, 30, 20, 10, 5, 5]
    path.write_bytes(b"".join(f">r{i}\n{'A' * n}\n".encode() for i, n in enumerate(sizes)))
    groups = fasta.split_fasta(path, 3)
    assert len(groups) == 3
    loads = [sum(r.residues for r in g) for g in groups]
    assert sum(loads) == sum(sizes)
    assert max(loads) - min(loads) <= 10
    names = [r.name for g in groups for r in g]
    assert sorted(names) == sorted(f"r{i}" for i in range(len(sizes)))
    for group in groups:  # file order within a chunk
        assert [r.name for r in group] == sorted((r.name for r in group), key=lambda n: int(n[1:]))


def test_split_into_one_chunk_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "x.fa"
    path.write_bytes(SMALL)
    [group] = fasta.split_fasta(path, 1)
    assert [r.name for r in group] == ["s1", "s2", "empty", "s3"]


def test_more_chunks_than_records_gives_one_record_each_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "x.fa"
    path.write_bytes(b">a\n>b\n>c\nAC\n")  # empty records still get a chunk of their own
    with pytest.warns(fasta.FastaSplitWarning, match="only 3 record"):
        groups = fasta.split_fasta(path, 5)
    assert sorted(len(g) for g in groups) == [1, 1, 1]


@pytest.mark.parametrize("chunks", [0, -1, True, 2.0])
def test_bad_chunk_counts(tmp_path: Path, chunks: Any) -> None:
    path = tmp_path / "x.fa"
    path.write_bytes(SMALL)
    with pytest.raises(fasta.FastaError, match="number of chunks"):
        fasta.split_fasta(path, chunks)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(fasta.FastaError, match="cannot read"):
        fasta.split_fasta(tmp_path / "nope.fa", 2)


def test_chunk_names_sort() -> None:
    assert fasta.chunk_name(7, 12) == "chunk-007"
    assert fasta.chunk_name(7, 1500) == "chunk-0007"
    assert fasta.chunk_file_name("/x/reads.FNA") == "reads.FNA"
    assert fasta.chunk_file_name("reads.txt") == "reads.txt.fasta"


def test_write_split_batch_through_a_callable(tmp_path: Path) -> None:
    path = tmp_path / "genome.fa"
    path.write_bytes(SMALL)
    written: dict[str, bytes] = {}
    chunks = fasta.write_split_batch(written.__setitem__, path, 2, "2024-03-01", "kmers")
    assert [c.analysis for c in chunks] == ["chunk-001", "chunk-002"]
    assert list(written) == [c.key for c in chunks]
    assert chunks[0].key == "Input/2024-03-01/kmers/chunk-001/genome.fa"
    assert sum(c.records for c in chunks) == 4
    assert sum(c.residues for c in chunks) == 24
    rejoined = [r.text for data in written.values() for r in fasta.parse_fasta(data)]
    assert sorted(rejoined) == sorted(r.text for r in fasta.parse_fasta(SMALL))


def test_write_split_batch_to_a_store_or_folder(tmp_path: Path) -> None:
    from bot.store.local import LocalStore

    path = tmp_path / "genome.fa"
    path.write_bytes(SMALL)
    store = LocalStore(tmp_path / "store")
    fasta.write_split_batch(store, path, 2, "2024-03-01", "b1")
    assert list(store.list_children("Input/2024-03-01/b1/")) == ["chunk-001", "chunk-002"]
    fasta.write_split_batch(tmp_path / "root", path, 3, "2024-03-01", "b2")
    assert (tmp_path / "root/Input/2024-03-01/b2/chunk-003/genome.fa").is_file()


@pytest.mark.parametrize(("date", "batch"), [("2024-13-01", "b"), ("2024-03-01", "../up")])
def test_write_split_batch_checks_the_layout(tmp_path: Path, date: str, batch: str) -> None:
    path = tmp_path / "genome.fa"
    path.write_bytes(SMALL)
    with pytest.raises(LayoutError):
        fasta.write_split_batch({}.__setitem__, path, 2, date, batch)


# -- merging --------------------------------------------------------------------------------------


def test_merge_kmer_tables_sums_texts_and_paths(tmp_path: Path) -> None:
    table = tmp_path / "kmers.tsv"
    table.write_text("kmer\tcount\nAC\t2\nGT\t1\n")
    merged = fasta.merge_kmer_tables([table, "kmer\tcount\nAA\t4\nAC\t3\n", b"kmer\tcount\n", str(table)])
    assert merged == {"AA": 4, "AC": 7, "GT": 2}
    assert list(merged) == ["AA", "AC", "GT"]


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ([], "no k-mer tables"),
        (["kmer\tcount\nAC\t1\n", "kmer\tcount\nACG\t1\n"], "different k"),
        (["count\tkmer\nAC\t1\n"], "not a k-mer table"),
        (["kmer\tcount\nAC\tmany\n"], "line 2: expected kmer<TAB>count"),
        (["/nonexistent/kmers.tsv"], "cannot read"),
    ],
)
def test_merge_kmer_tables_errors(tables: list[str], message: str) -> None:
    with pytest.raises(fasta.FastaError, match=message):
        fasta.merge_kmer_tables(tables)


def test_merge_summaries_checks_k() -> None:
    a, b = "sequences\tresidues\tk\n2\t10\t4\n", "sequences\tresidues\tk\n3\t5\t4\n"
    assert fasta.merge_summaries([a, b]) == fasta.Summary(5, 15, 4)
    with pytest.raises(fasta.FastaError, match=r"different k \(4, 5\)"):
        fasta.merge_summaries([a, "sequences\tresidues\tk\n1\t1\t5\n"])


def test_merge_outputs_names_a_missing_chunk() -> None:
    files = {"Output/d/b/chunk-001/kmers.tsv": b"kmer\tcount\nA\t1\n"}
    with pytest.raises(fasta.FastaError, match=r"Output/d/b/chunk-001/summary\.tsv \(did that chunk succeed"):
        fasta.merge_outputs(files.__getitem__, ["Output/d/b/chunk-001"])
    with pytest.raises(fasta.FastaError, match="no chunk outputs"):
        fasta.merge_outputs(files.__getitem__, [])


# -- the fasta-kmers pipeline ---------------------------------------------------------------------


def test_registry_loads_the_module() -> None:
    assert load("fasta-kmers") is fasta_kmers
    assert fasta_kmers.R_SCRIPT.is_file()


@pytest.mark.parametrize("k", [0, 13, -1, "four", 4.5, True, None, "12x"])
def test_invalid_k_is_a_parameter_error_before_r_runs(tmp_path: Path, k: Any) -> None:
    (tmp_path / "x.fa").write_bytes(SMALL)
    with pytest.raises(ParameterError, match="k must be an integer from 1 to 12"):
        fasta_kmers.run(context(tmp_path, tmp_path / "out", {"k": k}))
    assert not (tmp_path / "out").exists()


def test_k_accepts_digit_strings_and_defaults_to_4() -> None:
    assert fasta_kmers.parse_k({"k": "7"}) == 7
    assert fasta_kmers.parse_k({}) == 4


def test_no_fasta_file_says_what_the_folder_holds(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PipelineError, match=r"no FASTA file \(\*\.fa, \*\.fasta, \*\.fna\).*notes\.txt"):
        fasta_kmers.run(context(tmp_path, tmp_path / "out"))


@needs_r
def test_counts_a_small_fasta_by_hand(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/small.FA").write_bytes(SMALL)
    result = fasta_kmers.run(context(tmp_path / "in", tmp_path / "out"))
    assert result == {"sequences": 4, "residues": 24, "k": 4, "distinct_kmers": 4, "files": 1}
    assert (tmp_path / "out/kmers.tsv").read_text() == SMALL_KMERS
    assert (tmp_path / "out/summary.tsv").read_text() == SMALL_SUMMARY


@needs_r
def test_k1_and_several_files(tmp_path: Path) -> None:
    (tmp_path / "in/sub").mkdir(parents=True)
    (tmp_path / "in/a.fasta").write_bytes(b">a\nAAC\n")
    (tmp_path / "in/sub/b.fna").write_bytes(b">b\nnT-\n")
    fasta_kmers.run(context(tmp_path / "in", tmp_path / "out", {"k": 1}))
    assert (tmp_path / "out/kmers.tsv").read_text() == "kmer\tcount\nA\t2\nC\t1\nT\t1\n"
    assert (tmp_path / "out/summary.tsv").read_text() == "sequences\tresidues\tk\n2\t6\t1\n"


@needs_r
def test_r_failure_carries_r_message(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/bad.fa").write_bytes(b"ACGT\n")
    with pytest.raises(PipelineError, match=r"bad\.fa: sequence data before the first '>' header"):
        fasta_kmers.run(context(tmp_path / "in", tmp_path / "out"))


@needs_r
@pytest.mark.parametrize("k", [3, 12])
def test_r_matches_reference_counts(tmp_path: Path, k: int) -> None:
    data = random_fasta(seed=k, records=30)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/r.fa").write_bytes(data)
    fasta_kmers.run(context(tmp_path / "in", tmp_path / "out", {"k": k}))
    expected = reference_counts(fasta.parse_fasta(data), k)
    assert fasta.merge_kmer_tables([tmp_path / "out/kmers.tsv"]) == dict(sorted(expected.items()))


@needs_r
def test_split_count_merge_equals_whole_file(tmp_path: Path) -> None:
    source = tmp_path / "genome.fa"
    source.write_bytes(random_fasta(seed=7, records=40))
    params = {"k": 5}

    fasta_kmers.run(context(tmp_path, tmp_path / "whole", params))  # source is the folder's only FASTA

    store = tmp_path / "store"
    chunks = fasta.write_split_batch(store, source, 4, "2024-03-01", "split")
    assert len(chunks) == 4
    for chunk in chunks:
        fasta_kmers.run(
            context(
                store / f"Input/2024-03-01/split/{chunk.analysis}",
                store / f"Output/2024-03-01/split/{chunk.analysis}",
                params,
            )
        )
    kmers, summary = fasta.merge_outputs(
        lambda key: (store / key).read_bytes(),
        [f"Output/2024-03-01/split/{chunk.analysis}/" for chunk in chunks],
    )
    assert kmers == (tmp_path / "whole/kmers.tsv").read_text()
    assert summary == (tmp_path / "whole/summary.tsv").read_text()
