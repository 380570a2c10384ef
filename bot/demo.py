"""The demo batch: a few word-count analyses and one that fails on purpose."""

from __future__ import annotations

import datetime as dt
import json

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
