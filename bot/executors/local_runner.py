"""Runs one local job to completion: `python -m bot.executors.local_runner JOB_DIR`.

The local executor starts one runner per job in its own session, so a job outlives the process
that submitted it (a killed CLI or bot does not kill its jobs). The runner claims the job with an
exclusive create, so a job directory is executed at most once however often it is launched, and it
records the outcome in result.json, which is the executor's only source of truth for a finished job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SPEC = "spec.json"
CLAIM = "claimed.json"
RESULT = "result.json"
OUTPUT = "output.log"
CANCEL = "cancel"
KILL_GRACE_S = 10.0


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def claim(job_dir: Path) -> bool:
    try:
        fd = os.open(job_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "started_at": time.time()}, fh)
    return True


def run_jobs(job_dir: Path | None) -> int:
    """Run this job, then, while queued jobs wait for a slot, the next ones in the same process."""
    # A cancel is the job's `cancel` file; SIGTERM only wakes the runner up to look at it, so a signal
    # meant for a job that finished an instant ago cannot stop the next one.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    while job_dir is not None:
        spec = run(job_dir)
        job_dir = start_next(job_dir, spec) if spec is not None else None
    return 0


def run(job_dir: Path) -> dict[str, Any] | None:
    """Run one job to its result; returns its spec, or None when another runner has it."""
    if (job_dir / RESULT).exists() or not claim(job_dir):
        return None
    spec = json.loads((job_dir / SPEC).read_text())
    started = json.loads((job_dir / CLAIM).read_text())["started_at"]
    stop_reason: list[str] = []
    env = {**os.environ, **spec["env"]}
    with open(job_dir / OUTPUT, "ab", buffering=0) as log:
        try:
            proc = subprocess.Popen(spec["argv"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=spec.get("cwd") or None)
        except OSError as exc:
            log.write(f"cannot start the job: {exc}\n".encode())
            write_json_atomic(job_dir / RESULT, {"state": "FAILED", "exit_code": None, "started_at": started,
                                                 "stopped_at": time.time(),
                                                 "reason": f"cannot start the job: {exc}"})
            return spec
        deadline = started + float(spec["timeout_s"])
        while proc.poll() is None:
            if (job_dir / CANCEL).exists():
                stop_reason.append("cancelled")
                break
            if time.time() > deadline:
                stop_reason.append(f"timed out after {int(spec['timeout_s'])} s")
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    code = proc.returncode
    if stop_reason and stop_reason[0] == "cancelled":
        state, reason = "CANCELLED", "cancelled"
    elif stop_reason:
        state, reason = "FAILED", stop_reason[0]
    elif code == 0:
        state, reason = "SUCCEEDED", None
    elif code < 0:
        state, reason = "FAILED", f"killed by signal {signal.Signals(-code).name}"
    else:
        state, reason = "FAILED", f"exit code {code}"
    write_json_atomic(job_dir / RESULT, {"state": state, "exit_code": code, "reason": reason,
                                         "started_at": started, "stopped_at": time.time()})
    return spec


def start_next(job_dir: Path, spec: dict[str, Any]) -> Path | None:
    """Take the next queued job for this runner (and start runners for any other free slots), at once
    instead of at the engine's next poll."""
    from bot.executors.local import LocalExecutor

    return LocalExecutor(job_dir.parent, spec.get("max_parallel"), command=spec["argv"]).pump(take_one=True)


if __name__ == "__main__":
    sys.exit(run_jobs(Path(sys.argv[1])))
