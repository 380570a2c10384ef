"""Parallel efficiency of the local executor: 32 CPU-bound analyses on this machine's cores.

Ideal wall time = ceil(32 / cores) x (time of one analysis's work alone, measured in this run).
Efficiency = ideal / measured. Goal: >= 90 %.

Measured side by side in the same run: a bare pool of `cores` workers running the same 32 commands
with subprocess.run and nothing else. On a virtual machine whose cores do not scale perfectly, the
bare pool falls short of the ideal too; executor / bare pool is the executor's own efficiency.

    python bench/bench_local.py [--jobs 32] [--work-s 1.0]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.api import Cyto
from bot.settings import Settings
from bot.states import JobState

BURN = "n = int({n})\nx = 0\nfor i in range(n):\n    x += i * i\nprint(x)\n"


def calibrate(work_s: float) -> tuple[int, float]:
    """Loop count that takes about work_s of CPU in a fresh interpreter, and its measured wall time."""
    n = 2_000_000
    while True:
        t = _time_alone(n)
        if t >= 0.2:
            break
        n *= 2
    n = int(n * work_s / t)
    return n, min(_time_alone(n) for _ in range(3))


def _time_alone(n: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", BURN.format(n=n)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--work-s", type=float, default=1.0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    n, one = calibrate(args.work_s)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = root / "burn.py"
        script.write_text(BURN.format(n=n))
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=cores) as pool:
            list(pool.map(lambda _: subprocess.run([sys.executable, str(script)], check=True,
                                                   stdout=subprocess.DEVNULL), range(args.jobs)))
        bare = time.perf_counter() - start
        for i in range(args.jobs):
            (root / "store/Input/2020-01-01/bench" / f"a{i:03d}").mkdir(parents=True)
            (root / "store/Input/2020-01-01/bench" / f"a{i:03d}" / "x.txt").write_text("x")
        settings = Settings(store=str(root / "store"), db=str(root / "runs.sqlite"),
                            local_spool=str(root / "spool"), local_command=(sys.executable, str(script)))
        cyto = Cyto(settings)
        start = time.perf_counter()
        run = cyto.run("2020-01-01", "bench", pipeline="wordcount", requested_by="bench")
        summary = cyto.wait(run.id, interval=0.5)
        wall = time.perf_counter() - start
    ideal = math.ceil(args.jobs / cores) * one
    print(f"cores: {cores}")
    print(f"one analysis alone (process start + work): {one:.3f} s")
    print(f"{args.jobs} analyses through the local executor: {wall:.3f} s wall")
    print(f"ideal on {cores} cores: {ideal:.3f} s")
    print(f"bare process pool of {cores}, same commands: {bare:.3f} s wall "
          f"({100 * ideal / bare:.1f} % of ideal: the machine's own ceiling)")
    print(f"parallel efficiency: {100 * ideal / wall:.1f} % of ideal (goal >= 90 %); "
          f"{100 * bare / wall:.1f} % of the bare pool")
    print(f"succeeded: {summary.count(JobState.SUCCEEDED)} of {args.jobs}")


if __name__ == "__main__":
    main()
