"""Files are written with the user's umask on every path that writes: the store's outputs and
logs (write-then-rename in the job's staging and the local store) and split-fasta chunks. With
umask 022 colleagues on a shared folder can read them (before: mkstemp made every file 0600)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store.local import LocalStore
from container.staging import upload_dir
from tests.timeouts import seconds

ROOT = Path(__file__).resolve().parent.parent


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640)])
def test_store_and_staging_writes_follow_the_umask(tmp_path: Path, umask: int, expected: int) -> None:
    old = os.umask(umask)
    try:
        LocalStore(tmp_path / "store").write_bytes("Output/a/b.txt", b"x")
        (tmp_path / "work").mkdir()
        (tmp_path / "work" / "r.json").write_text("{}")
        os.chmod(tmp_path / "work" / "r.json", 0o600)  # a source's own mode is not what decides
        upload_dir(tmp_path / "work", (tmp_path / "store" / "Logs").as_uri())
    finally:
        os.umask(old)
    assert modes(tmp_path / "store") == {"Output/a/b.txt": expected, "Logs/r.json": expected}


@pytest.mark.slow
def test_a_run_and_split_fasta_through_the_cli_give_0644_with_umask_022(cyto_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    store = Path(cyto_env["CYTO_STORE"])
    for name in ("A01", "A02"):
        (store / "Input/2018-12-05/b7" / name).mkdir(parents=True)
        (store / "Input/2018-12-05/b7" / name / "x.txt").write_text(f"{name} hello\n")
    fasta = tmp_path / "reads.fa"
    fasta.write_text(">r1\nACGTACGT\n>r2\nGGGCCCAA\n>r3\nTTTTAAAA\n")
    env = {**os.environ, **cyto_env, "PYTHONPATH": str(ROOT)}
    cli = f"{sys.executable} -m bot.cli"
    script = (f"umask 022 && {cli} run 2018-12-05 b7 --pipeline wordcount --wait && "
              f"{cli} split-fasta {fasta} --chunks 2 --date 2018-12-05 --batch kmers")
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=seconds(180))
    assert result.returncode == 0, result.stdout + result.stderr
    written = modes(store)
    outputs = [k for k in written if k.startswith(("Output/", "Logs/"))]
    chunks = [k for k in written if k.startswith("Input/2018-12-05/kmers/")]
    assert len(outputs) >= 6 and len(chunks) == 2, written
    assert {k: oct(written[k]) for k in outputs + chunks if written[k] != 0o644} == {}
