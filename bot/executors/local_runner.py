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


def run(job_dir: Path) -> int:
    if (job_dir / RESULT).exists() or not claim(job_dir):
        return 0
    spec = json.loads((job_dir / SPEC).read_text())
    started = json.loads((job_dir / CLAIM).read_text())["started_at"]
    stop_reason: list[str] = []

    def on_term(signum: int, frame: object) -> None:
        stop_reason.append("cancelled")

    signal.signal(signal.SIGTERM, on_term)
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
            return 0
        deadline = started + float(spec["timeout_s"])
        while proc.poll() is None:
            if stop_reason or (job_dir / CANCEL).exists():
                stop_reason[:] = ["cancelled"]
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
    start_next(job_dir, spec)
    return 0


def start_next(job_dir: Path, spec: dict[str, Any]) -> None:
    """Hand this job's slot to the next queued job at once, instead of at the engine's next poll."""
    from bot.executors.local import LocalExecutor

    LocalExecutor(job_dir.parent, spec.get("max_parallel"), command=spec["argv"]).pump()


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
