"""Benchmark of the cytometry pipeline (a script, not a test): python bench/bench_cytometry.py [--repeat N] [--data DIR]

Writes, with FlowIO, 24 files x 100,000 events x 12 channels and one 5,000,000-event file into a
temporary folder, then runs the pipeline on each set in a fresh subprocess (one core:
OPENBLAS_NUM_THREADS=1) and prints events per second before plotting (read, compensate, gate,
statistics, QC) and in total, and the peak memory as a multiple of the raw event data of the
largest file (files are analysed one at a time): tracemalloc's peak of numpy allocations (in a
separate run, as tracing slows Python down), and VmHWM above the process's size before the run.
The third set, "gated", is one 1,000,000-event file gated with a GatingML 2.0 document of 8
populations over the same 12 channels (bench/gating_document.py; compensation from $SPILLOVER,
logicle, polygon, rectangle, range, ellipse and boolean gates) through `gating_file`; beside it,
FlowKit's own gating of the same file (fk.Sample + GatingStrategy.gate_sample) in the same run,
and the ratio of the two times (ours includes statistics and QC; below 1: ours is faster).
With --repeat N each measurement runs N times and min / median are reported (the machine may be
shared); --data DIR keeps the written files in DIR and reuses them on the next call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from array import array
from pathlib import Path

import flowio
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = [
    "FSC-A",
    "FSC-H",
    "SSC-A",
    "FITC-A",
    "PE-A",
    "PerCP-A",
    "PE-Cy7-A",
    "APC-A",
    "APC-Cy7-A",
    "BV421-A",
    "BV510-A",
    "Time",
]
SPILL = (
    "8,"
    + ",".join(CHANNELS[3:11])
    + ","
    + ",".join("1" if i == j else ("0.05" if abs(i - j) == 1 else "0") for i in range(8) for j in range(8))
)


def write(path: Path, n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    data = np.empty((n, len(CHANNELS)), dtype=np.float32)
    fsc = rng.normal(80_000, 10_000, n).astype(np.float32)
    debris = rng.random(n) < 0.1
    fsc[debris] = rng.lognormal(np.log(6_000), 0.4, int(debris.sum()))
    data[:, 0] = fsc
    data[:, 1] = fsc * rng.normal(0.8, 0.02, n).astype(np.float32)
    data[:, 2] = np.abs(rng.normal(40_000, 8_000, n))
    data[:, 3:11] = rng.lognormal(7, 1.2, (n, 8))
    data[:, 11] = np.linspace(0, 600, n, dtype=np.float32)
    flat = array("f")
    flat.frombytes(data.tobytes())
    with path.open("wb") as fh:
        flowio.create_fcs(fh, flat, CHANNELS, metadata_dict={"spillover": SPILL})
    return data.nbytes


CHILD = r"""
import json, logging, resource, sys, time, tracemalloc
from pathlib import Path
from container.pipelines import PipelineContext
from container.pipelines import cytometry
inp, out, trace = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "trace"
logging.basicConfig(level=logging.WARNING)
def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = hwm()
if trace:
    tracemalloc.start()
wall, cpu = time.perf_counter(), time.process_time()
summary = cytometry.run(PipelineContext(inp, out, {}, logging.getLogger("bench")))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
traced = tracemalloc.get_traced_memory()[1] if trace else 0
rss = hwm() - base
full = json.loads((out / "summary.json").read_text())
print(json.dumps({"events": summary["events"], "wall": wall, "cpu": cpu,
                  "analysis": full["analysis_seconds"], "traced_peak": traced, "rss_above_start": rss}))
"""


FLOWKIT_CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import flowkit as fk
fcs, doc = sys.argv[1], sys.argv[2]
strategy = fk.parse_gating_xml(doc)
wall = time.perf_counter()
sample = fk.Sample(fcs, subsample=0)
results = strategy.gate_sample(sample)
wall = time.perf_counter() - wall
print(json.dumps({"events": sample.event_count, "wall": wall, "populations": len(results.report)}))
"""


def measure_flowkit(fcs_file: Path, document: Path) -> dict[str, float]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", FLOWKIT_CHILD, str(fcs_file), str(document)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_gated(root: Path) -> tuple[Path, int]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gating_document import write_document

    gated = root / "gated"
    marker = gated / "size.json"
    if marker.is_file():
        return gated, json.loads(marker.read_text())["raw"]
    gated.mkdir(parents=True, exist_ok=True)
    raw = write(gated / "gated.fcs", 1_000_000, 7)
    assert write_document(gated / "panel.xml") == 8
    (gated / "params.json").write_text(json.dumps({"gating_file": "panel.xml"}))
    marker.write_text(json.dumps({"raw": raw}))
    return gated, raw


def measure(inp: Path, out: Path, trace: bool) -> dict[str, float]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    mode = "trace" if trace else "time"
    cmd = [sys.executable, "-c", CHILD, str(inp), str(out), mode]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(title: str, timed: list[dict[str, float]], traced: list[dict[str, float]], raw: int) -> None:
    ev = timed[0]["events"]

    def rate(key: str) -> str:
        seconds = sorted(m[key] for m in timed)
        best, median = seconds[0], statistics.median(seconds)
        return f"{best:.2f} s / {median:.2f} s  -> {ev / best / 1e6:.1f} / {ev / median / 1e6:.1f} M events/s"

    def ratio(values: list[float]) -> str:
        return f"{min(values) / raw:.2f}x / {statistics.median(values) / raw:.2f}x"

    print(f"{title}: {ev:,} events, {len(timed)} run(s); figures are min / median")
    print(f"  before plotting: {rate('analysis')} per core")
    print(f"  total (with plots, outputs), wall: {rate('wall')}")
    print(f"  peak memory / raw events of the largest file ({raw / 1e6:.1f} MB):")
    print(f"    tracemalloc {ratio([m['traced_peak'] for m in traced])}")
    print(f"    VmHWM above start {ratio([m['rss_above_start'] for m in timed])}")


def prepare(root: Path) -> tuple[Path, Path, int, int]:
    many, big = root / "many", root / "big"
    marker = root / "sizes.json"
    if marker.is_file():
        sizes = json.loads(marker.read_text())
        return many, big, sizes["small"], sizes["big"]
    many.mkdir(parents=True, exist_ok=True)
    big.mkdir(parents=True, exist_ok=True)
    raw_small = max(write(many / f"s{i:02d}.fcs", 100_000, i) for i in range(24))
    raw_big = write(big / "big.fcs", 5_000_000, 99)
    marker.write_text(json.dumps({"small": raw_small, "big": raw_big}))
    return many, big, raw_small, raw_big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (min and median reported)")
    parser.add_argument("--data", type=Path, help="folder for the written files, reused when present")
    parser.add_argument("--only", choices=("many", "big", "gated"), help="run one of the sets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cyto-bench-") as tmp:
        many, big, raw_small, raw_big = prepare(args.data or Path(tmp) / "data")
        for key, title, inp, raw in (
            ("many", "24 files x 100,000 events x 12 channels", many, raw_small),
            ("big", "1 file x 5,000,000 events x 12 channels", big, raw_big),
        ):
            if args.only not in (None, key):
                continue
            timed = [measure(inp, Path(tmp) / "out-time", trace=False) for _ in range(args.repeat)]
            # tracemalloc slows Python down: separate runs
            traced = [measure(inp, Path(tmp) / "out-trace", trace=True) for _ in range(args.repeat)]
            report(title, timed, traced, raw)
        if args.only in (None, "gated"):
            gated, raw = prepare_gated(args.data or Path(tmp) / "data")
            timed, theirs = [], []
            for _ in range(args.repeat):  # interleaved: a shared machine's load falls on both alike
                timed.append(measure(gated, Path(tmp) / "out-gated", trace=False))
                theirs.append(measure_flowkit(gated / "gated.fcs", gated / "panel.xml"))
            traced = [measure(gated, Path(tmp) / "out-gated-trace", trace=True) for _ in range(args.repeat)]
            report("1 file x 1,000,000 events x 12 channels, gated by a GatingML document (8 populations)",
                   timed, traced, raw)
            seconds = sorted(m["wall"] for m in theirs)
            ours = sorted(m["analysis"] for m in timed)
            ev = theirs[0]["events"]
            print(f"  FlowKit 1.3.2 alone (read + gate_sample, no statistics): {seconds[0]:.2f} s / "
                  f"{statistics.median(seconds):.2f} s  -> {ev / seconds[0] / 1e6:.2f} / "
                  f"{ev / statistics.median(seconds) / 1e6:.2f} M events/s per core")
            print(f"  ours (read, gate, statistics, QC) / FlowKit alone: {ours[0] / seconds[0]:.2f}x / "
                  f"{statistics.median(ours) / statistics.median(seconds):.2f}x the time")


if __name__ == "__main__":
    main()
