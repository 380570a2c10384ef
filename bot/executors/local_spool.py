"""The local job spool's layout and the few file operations both its sides use: the executor
(bot/executors/local.py), which queues, starts and describes jobs, and the runner
(bot/executors/local_runner.py), which runs one to its result.

    jobs/NAME/      spec.json, launched.json, claimed.json, process.json, cancel   (live jobs only)
    queue/SEQ-NAME  a job waiting for a free slot (SEQ orders the queue)
    done/NAME.json  a finished job's result
    logs/NAME.log   a job's output, live or finished
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

SPEC = "spec.json"
CLAIM = "claimed.json"
PROCESS = "process.json"  # the job's pid, which is also its process group id
CANCEL = "cancel"
JOBS, QUEUE, DONE, LOGS = "jobs", "queue", "done", "logs"
LOST_REASON = "the job's process disappeared (killed, or the machine restarted)"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def spool_of(job_dir: Path) -> Path:
    return job_dir.parent.parent


def result_path(spool: Path, name: str) -> Path:
    return spool / DONE / f"{name}.json"


def log_path(spool: Path, name: str) -> Path:
    return spool / LOGS / f"{name}.log"


def finish(job_dir: Path, result: dict[str, Any]) -> None:
    """Record a job's result and remove its live folder (and queue marker, if it never started)."""
    spool, name = spool_of(job_dir), job_dir.name
    write_json_atomic(result_path(spool, name), result)
    spec = read_json(job_dir / SPEC)
    if spec and spec.get("queue_marker"):
        (spool / QUEUE / spec["queue_marker"]).unlink(missing_ok=True)
    shutil.rmtree(job_dir, ignore_errors=True)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        # A claim file is created empty and filled an instant later; treat it as not there yet.
        return None


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
