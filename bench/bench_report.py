"""Benchmark of the run report (a script, not a test): python bench/bench_report.py [--analyses N] [--files F]

Makes a finished cytometry run of N analyses x F files (default 1,000 x 4) in a temporary local store
and ledger: one real analysis is run through the pipeline (its own time per file and plot time are
printed too), and its outputs (qc.json, stats.csv, plots, summary.json) are copied to every analysis
with the wells renamed. Then builds the report and the merged tables once, and prints the time per
analysis (target: <= 20 ms), which objects were read and how many bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.api import Cyto  # noqa: E402
from bot.demo import CYTOMETRY_CHANNELS, CYTOMETRY_LABELS, SPILLOVER, cytometry_events  # noqa: E402
from bot.layout import BatchRef  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.states import JobState  # noqa: E402
from bot.store.local import LocalStore  # noqa: E402
from tests.scripted_executor import ScriptedExecutor  # noqa: E402


class CountingStore(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()
        self.read_bytes_total = 0

    def read_bytes(self, key: str) -> bytes:
        data = super().read_bytes(key)
        self.reads[key.rsplit("/", 1)[-1].rsplit(".", 1)[-1]] += 1
        self.read_bytes_total += len(data)
        return data


def one_analysis(folder: Path, files: int) -> tuple[Path, float, float]:
    """Run the real pipeline on F files; returns the output folder, its analysis and total s per file."""
    import flowio

    from container.pipelines import PipelineContext, cytometry

    inp, out = folder / "in", folder / "out"
    inp.mkdir(parents=True)
    for k in range(files):
        with (inp / f"A{k + 1:02d}.fcs").open("wb") as fh:
            flowio.create_fcs(fh, cytometry_events(100_000, k).ravel(), CYTOMETRY_CHANNELS,
                              opt_channel_names=CYTOMETRY_LABELS, metadata_dict={"$SPILLOVER": SPILLOVER})
    import logging

    start = time.perf_counter()
    cytometry.run(PipelineContext(input_dir=inp, output_dir=out, params={}, log=logging.getLogger("bench")))
    total = (time.perf_counter() - start) / files
    analysis_s = json.loads((out / "summary.json").read_text())["analysis_seconds"] / files
    return out, analysis_s, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--analyses", type=int, default=1000)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template, analysis_s, total_s = one_analysis(root / "template", args.files)
        store = CountingStore(root / "store")
        ref = BatchRef("2026-11-30", "bench")
        names = [f"plate{p:03d}" for p in range(args.analyses)]
        for name in names:
            (root / "store" / ref.input_prefix / name).mkdir(parents=True)
            out = root / "store" / ref.analysis(name).output_prefix
            out.mkdir(parents=True)
            for item in template.iterdir():
                (out / item.name).write_bytes(item.read_bytes())
        executor = ScriptedExecutor()
        cyto = Cyto(Settings(store=str(root / "store"), db=str(root / "runs.sqlite")), store=store, executor=executor)
        run = cyto.start(cyto.plan(ref.date, ref.batch, pipeline="cytometry"), "bench")
        executor.finish_all(JobState.SUCCEEDED)
        cyto.poll()
        store.reads.clear()
        store.read_bytes_total = 0
        start = time.perf_counter()
        result = cyto.report(run.id)
        seconds = time.perf_counter() - start
        per = 1000 * seconds / args.analyses
        print(f"report of {args.analyses} analyses x {args.files} files: {seconds:.2f} s, {per:.1f} ms per analysis "
              f"(target <= 20 ms)")
        print(f"  read {dict(store.reads)} objects, {store.read_bytes_total / 1e6:.1f} MB in all; "
              f"wrote {', '.join(sorted(result.files))}")
        print(f"  the pipeline itself: {analysis_s:.3f} s per file before plotting, {total_s:.3f} s per file in all "
              "(100,000 events, 7 channels)")
        print(f"  {result.headline}")


if __name__ == "__main__":
    main()
