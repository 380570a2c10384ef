"""The demo batch: a few word-count analyses and one that fails on purpose."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bot.layout import BatchRef
from bot.store import Store

FAILING_ANALYSIS = "s06-missing-input"

_TEXTS = {
    "s01-protocol": "Stain cells with the antibody cocktail for 30 minutes at 4 C.\n"
                    "Wash twice with FACS buffer.\nAcquire at least 100000 events per tube.\n",
    "s02-panel": "CD3 FITC\nCD4 PE\nCD8 APC\nCD19 PerCP-Cy5.5\nLive/Dead violet\n",
    "s03-notes": "Compensation beads were run before the samples.\n\nThe 488 nm laser was warmed up for 30 min.\n",
    "s04-plate": "".join(f"well {row}{col} sample-{row}{col:02d}\n" for row in "ABCDEFGH" for col in range(1, 13)),
    "s05-empty-lines": "first line\n\n\n   indented words here\t\tand tabs\nlast line without newline",
}


def write_demo_batch(store: Store, date: str | None = None, batch: str = "demo") -> tuple[BatchRef, list[str]]:
    """Write the demo inputs under Input/{date}/{batch}/ (today by default) and return the analyses."""
    ref = BatchRef(date or dt.date.today().isoformat(), batch)
    for name, text in _TEXTS.items():
        store.write_bytes(f"{ref.input_prefix}{name}/{name}.txt", text.encode())
        store.write_bytes(f"{ref.input_prefix}{name}/extra.txt", (text * 3).encode())
    store.write_bytes(f"{ref.input_prefix}{FAILING_ANALYSIS}/present.txt", b"this file is here\n")
    store.write_bytes(f"{ref.input_prefix}{FAILING_ANALYSIS}/params.json",
                      json.dumps({"files": ["present.txt", "counts.txt"]}).encode())
    return ref, [*_TEXTS, FAILING_ANALYSIS]


# -- the cytometry demo: a small plate written with FlowIO ------------------------------------------
CYTOMETRY_FAILING = "row-C"
CYTOMETRY_CHANNELS = ["FSC-A", "FSC-H", "SSC-A", "FL1-A", "FL2-A", "FL3-A", "Time"]
CYTOMETRY_LABELS = ["", "", "", "CD4 FITC", "CD8 PE", "CD19 APC", ""]
SPILLOVER = "3,FL1-A,FL2-A,FL3-A,1,0.12,0.01,0.03,1,0.05,0,0.02,1"
_PLATE = {  # analysis -> {file: (events, what is special about it)}
    "row-A": {"A01.fcs": (20_000, ""), "A02.fcs": (20_000, ""), "A03.fcs": (20_000, "drift"),
              "A04.fcs": (20_000, "")},
    "row-B": {"sample_B01.fcs": (20_000, ""), "sample_B02.fcs": (20_000, "gap"),
              "sample_B03.fcs": (400, "few"), "tube-4.fcs": (20_000, "wellid")},
    CYTOMETRY_FAILING: {"C01.fcs": (0, "unreadable")},
}


def cytometry_events(n: int, seed: int, special: str = "") -> Any:
    """Cells, 10 % low-FSC debris and 6 % doublets; three stained markers seen through a spillover
    matrix; Time in seconds over a 60 s acquisition."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_debris, n_doublets = int(n * 0.10), int(n * 0.06)
    n_cells = n - n_debris - n_doublets
    fsc = np.concatenate([rng.normal(90_000, 9_000, n_cells), rng.lognormal(np.log(7_000), 0.4, n_debris),
                          rng.normal(175_000, 14_000, n_doublets)])
    ratio = np.concatenate([rng.normal(0.82, 0.02, n_cells), rng.normal(0.8, 0.05, n_debris),
                            rng.normal(0.52, 0.03, n_doublets)])
    ssc = np.abs(rng.normal(45_000, 7_000, n)) * np.where(np.arange(n) < n_cells, 1.0, 0.45)
    positive = rng.random((n, 3)) < [0.45, 0.25, 0.12]
    true = np.where(positive, rng.lognormal(np.log([9_000, 6_000, 4_000]), 0.35, (n, 3)),
                    rng.normal(150, 120, (n, 3)))
    spill = np.array([[1, 0.12, 0.01], [0.03, 1, 0.05], [0, 0.02, 1]])
    observed = true @ spill
    data = np.column_stack([fsc, fsc * ratio, ssc, observed, np.zeros(n)])[rng.permutation(n)]
    t = np.sort(rng.uniform(0, 60, n))
    if special == "gap":
        t = np.where(t < 25, t, t + 20) * 60 / 80  # nothing acquired for a quarter of the time
    data[:, 6] = t
    if special == "drift":
        data[:, 0] *= np.linspace(1.0, 1.4, n)
        data[:, 1] *= np.linspace(1.0, 1.4, n)
    return np.clip(data, -500, 262_143).astype(np.float32)


def write_cytometry_batch(store: Store, date: str | None = None,
                          batch: str = "demo-plate") -> tuple[BatchRef, list[str]]:
    """Write a small plate of synthetic FCS files (FlowIO) under Input/{date}/{batch}/: two rows that
    run, one well with too few events, one drifting, one with a gap in Time, and a third row whose only
    file is unreadable (that analysis fails on purpose)."""
    import io

    try:
        import flowio
    except ImportError:  # the bot image has no job dependencies
        raise RuntimeError("the cytometry demo needs the job's packages: pip install -e '.[container]'") from None
    ref = BatchRef(date or dt.date.today().isoformat(), batch)
    for seed, (analysis, files) in enumerate(_PLATE.items()):
        for k, (name, (n, special)) in enumerate(files.items()):
            key = f"{ref.input_prefix}{analysis}/{name}"
            if special == "unreadable":
                store.write_bytes(key, b"FCS3.1    this file was cut off by a full disk")
                continue
            events = cytometry_events(n, 100 * seed + k, special)
            meta = {"$SPILLOVER": SPILLOVER, "$TIMESTEP": "1", "$CYT": "cyto-bot demo"}
            if special == "wellid":
                meta["$WELLID"] = "B04"
            out = io.BytesIO()
            flowio.create_fcs(out, events.ravel(), CYTOMETRY_CHANNELS, opt_channel_names=CYTOMETRY_LABELS,
                              metadata_dict=meta)
            store.write_bytes(key, out.getvalue())
    return ref, list(_PLATE)
