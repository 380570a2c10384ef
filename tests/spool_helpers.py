"""Reading a local executor's spool in tests (the executor itself never lists its history)."""

from __future__ import annotations

import os
from pathlib import Path

from bot.executors.local_spool import DONE, JOBS


def spool_job_names(spool: Path) -> list[str]:
    """Every job the spool knows, live or finished; their states: `LocalExecutor.describe(names)`."""
    live = set(os.listdir(spool / JOBS)) if (spool / JOBS).is_dir() else set()
    done = os.listdir(spool / DONE) if (spool / DONE).is_dir() else []
    return sorted(live | {name.removesuffix(".json") for name in done if name.endswith(".json")})
