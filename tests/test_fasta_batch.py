"""The FASTA use cases through the session (`Cyto.split_fasta`, `Cyto.merge_fasta`) and a run's
outputs (`Cyto.outputs`, `Cyto.read_output`): what they refuse, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.api import Cyto, FastaError, NotFound
from tests.cli_helpers import BATCH, DATE, write_two_analyses


def write_fasta(path: Path, records: int) -> None:
    path.write_text("".join(f">read{i}\nACGTACGT\n" for i in range(records)))


def test_split_writes_one_chunk_per_analysis_and_notes_too_many_chunks(cyto: Cyto, tmp_path: Path) -> None:
    fasta_path = tmp_path / "reads.fa"
    write_fasta(fasta_path, 3)

    split = cyto.split_fasta(fasta_path, 5, DATE, "kmers")

    assert [c.analysis for c in split.chunks] == ["chunk-001", "chunk-002", "chunk-003"]
    assert len(split.notes) == 1 and "3" in split.notes[0]
    assert cyto.batches(DATE) == ["kmers"]
    with pytest.raises(FastaError, match="batch 2018-12-05/kmers already exists"):
        cyto.split_fasta(fasta_path, 2, DATE, "kmers")


def test_merge_refuses_a_run_of_another_pipeline(cyto: Cyto, cyto_env: dict[str, str]) -> None:
    write_two_analyses(Path(cyto_env["CYTO_STORE"]))
    run = cyto.start(cyto.plan(DATE, BATCH, pipeline="wordcount"), "tester", hold=True)

    with pytest.raises(FastaError, match=f"run {run.id} ran wordcount, not fasta-kmers"):
        cyto.merge_fasta(run.id)
    with pytest.raises(NotFound):
        cyto.merge_fasta("nope00")
    cyto.cancel(run.id, by="tester")


def test_outputs_name_the_analyses_and_read_only_the_runs_own_folder(cyto: Cyto, cyto_env: dict[str, str]) -> None:
    store = Path(cyto_env["CYTO_STORE"])
    write_two_analyses(store)
    run = cyto.start(cyto.plan(DATE, BATCH, pipeline="wordcount"), "tester", hold=True)
    (store / f"Output/{DATE}/{BATCH}/A01").mkdir(parents=True)
    (store / f"Output/{DATE}/{BATCH}/A01/counts.tsv").write_text("hello\t1\n")

    found = cyto.outputs(run.id)

    assert [(f.analysis, f.relative, f.size) for f in found] == [("A01", "counts.tsv", 8)]
    assert cyto.outputs(run.id, "A02") == []
    assert cyto.read_output(run.id, found[0].key) == b"hello\t1\n"
    with pytest.raises(NotFound, match="has no analysis 'Z9'"):
        cyto.outputs(run.id, "Z9")
    with pytest.raises(NotFound, match="not in run"):
        cyto.read_output(run.id, f"Input/{DATE}/{BATCH}/A01/x.txt")
    with pytest.raises(NotFound, match="not in run"):
        cyto.read_output(run.id, f"Output/{DATE}/{BATCH}/../../../Input/{DATE}/{BATCH}/A01/x.txt")
    cyto.cancel(run.id, by="tester")
