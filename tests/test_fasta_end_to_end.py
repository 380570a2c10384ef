"""The FASTA case end to end: split into 5 chunks, run 5 analyses through the local executor,
merge, and compare with a single job over the whole file."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None,
                                reason="Rscript is not installed here (CI and the job image install r-base-core)")


def write_fasta(path: Path, records: int = 40, seed: int = 7) -> None:
    rng = random.Random(seed)
    lines = []
    for i in range(records):
        sequence = "".join(rng.choice("ACGTacgtN") for _ in range(rng.randint(20, 400)))
        lines.append(f">read{i} sample\n")
        lines.extend(sequence[j:j + 60] + "\n" for j in range(0, len(sequence), 60))
    path.write_text("".join(lines))


def run_id_of(output: str) -> str:
    return output.split()[1].rstrip(":")


def test_split_run_merge_equals_one_job_over_the_whole_file(cyto_env: dict[str, str], tmp_path: Path) -> None:
    fasta_path = tmp_path / "reads.fa"
    write_fasta(fasta_path)
    runner = CliRunner()

    def cyto(*args: str):
        return runner.invoke(cli, list(args), env=cyto_env, catch_exceptions=False)

    split = cyto("split-fasta", str(fasta_path), "--chunks", "5", "--date", "2018-12-05", "--batch", "kmers")
    assert split.exit_code == 0, split.output
    assert [line.split()[0] for line in split.output.splitlines()[:5]] == [f"chunk-00{i}" for i in range(1, 6)]
    again = runner.invoke(cli, ["split-fasta", str(fasta_path), "--chunks", "5", "--date", "2018-12-05",
                                "--batch", "kmers"], env=cyto_env)
    assert again.exit_code == 2 and "already exists" in again.output

    whole = cyto("split-fasta", str(fasta_path), "--chunks", "1", "--date", "2018-12-05", "--batch", "whole")
    assert whole.exit_code == 0, whole.output

    chunked = cyto("run", "2018-12-05", "kmers", "--pipeline", "fasta-kmers", "--param", "k=3", "--wait")
    assert chunked.exit_code == 0, chunked.output
    assert "5 analyses: 5 succeeded" in chunked.output
    single = cyto("run", "2018-12-05", "whole", "--pipeline", "fasta-kmers", "--param", "k=3", "--wait")
    assert single.exit_code == 0, single.output

    merged = cyto("merge", run_id_of(chunked.output))
    assert merged.exit_code == 0, merged.output
    store = Path(cyto_env["CYTO_STORE"])
    merged_kmers = (store / "Output/2018-12-05/kmers/merged/kmers.tsv").read_text()
    single_kmers = (store / "Output/2018-12-05/whole/chunk-001/kmers.tsv").read_text()
    assert merged_kmers == single_kmers and merged_kmers.count("\n") > 30
    assert (store / "Output/2018-12-05/kmers/merged/summary.tsv").read_text() == \
        (store / "Output/2018-12-05/whole/chunk-001/summary.tsv").read_text()

    wrong = runner.invoke(cli, ["merge", "zzzzzz"], env=cyto_env)
    assert wrong.exit_code == 2 and "no run 'zzzzzz'" in wrong.output
