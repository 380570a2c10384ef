"""Benchmark of the per-file plot (a script, not a test): python bench/bench_plots.py [--files N]

Writes N files of 100,000 events (the demo plate's channels: scatter, three markers through a
spillover matrix, Time) with FlowIO, analyses each (read, compensate, gate, measure, QC), then times
only the plot, automatic gates (density panels + fluorescence overview) and two user gates, and
prints the median and worst CPU seconds per file next to the analysis's own time per file.
Target: plotting <= 0.15 s per file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.demo import CYTOMETRY_CHANNELS, CYTOMETRY_LABELS, SPILLOVER, cytometry_events  # noqa: E402
from container.cytometry import analysis, plots  # noqa: E402
from container.cytometry import params as params_mod  # noqa: E402

USER_GATES = [
    {"name": "CD4+", "type": "rectangle", "x": "FL1-A", "bounds": {"x": [0.55, None]}},
    {"name": "T", "parent": "CD4+", "type": "polygon", "x": "FL1-A", "y": "FL2-A",
     "vertices": [[0.5, 0.1], [0.9, 0.1], [0.9, 0.5], [0.5, 0.5]]},
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args()
    import flowio

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for k in range(args.files):
            path = folder / f"A{k + 1:02d}.fcs"
            with path.open("wb") as fh:
                flowio.create_fcs(fh, cytometry_events(100_000, k).ravel(), CYTOMETRY_CHANNELS,
                                  opt_channel_names=CYTOMETRY_LABELS, metadata_dict={"$SPILLOVER": SPILLOVER})
            paths.append(path)
        for label, raw in (("automatic gates", {}), ("user gates", {"gates": USER_GATES})):
            params = params_mod.parse(raw)
            scale = analysis.scale_of(params)
            plotter = plots.Plotter()
            analyse_s, plot_s = [], []
            for path in paths:
                result = analysis.analyse(path, path.name, params)
                analyse_s.append(result.seconds)
                start = time.process_time()  # CPU seconds: what a job pays, even on a shared machine
                plotter.plot(folder / f"{path.stem}.png", result.sample, result.gating, scale,
                             params.max_plot_points, path.name)
                plot_s.append(time.process_time() - start)
            print(f"{label:16s} plot: median {statistics.median(plot_s):.3f} s, worst {max(plot_s):.3f} s per file"
                  f"  |  analysis: median {statistics.median(analyse_s):.3f} s per file (100,000 events)")


if __name__ == "__main__":
    main()
