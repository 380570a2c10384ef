"""Runs one local job to completion: `python -m bot.executors.local_runner SPOOL/jobs/NAME`.

The local executor starts one runner per job in its own session, so a job outlives the process
that submitted it (a killed CLI or bot does not kill its jobs). The runner claims the job with an
exclusive create, so a job is executed at most once however often it is launched. The job runs in
its own process group and is killed when its runner dies, so a lost attempt never keeps writing
beside its retry. The outcome goes to `done/NAME.json`, the executor's only source of truth for a
finished job, and the job's folder is removed: the spool's `jobs/` holds live jobs only.

The spool's layout is in bot/executors/local_spool.py. The runner builds on the executor (it starts
the next queued job with the executor's own pump); the executor never imports the runner, only
names it in the command line that launches one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.executors.local import LocalExecutor, prune_finished
from bot.executors.local_spool import (
    CANCEL,
    CLAIM,
    PROCESS,
    SPEC,
    finish,
    kill_group,
    log_path,
    read_json,
    result_path,
    spool_of,
    write_json_atomic,
)

KILL_GRACE_S = 10.0


def claim(job_dir: Path) -> bool:
    try:
        fd = os.open(job_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except (FileExistsError, FileNotFoundError):  # another runner has it, or it finished meanwhile
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "started_at": time.time()}, fh)
    return True


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the job receive SIGKILL when its runner dies (Linux prctl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before the line above took effect
            os._exit(137)

    return preexec


def run_jobs(job_dir: Path | None) -> int:
    """Run this job, then, while queued jobs wait for a slot, the next ones in the same process."""
    # A cancel is the job's `cancel` file; SIGTERM only wakes the runner up to look at it, so a signal
    # meant for a job that finished an instant ago cannot stop the next one.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    spool, keep_days = spool_of(job_dir) if job_dir else None, None
    while job_dir is not None:
        spec = run(job_dir)
        if spec is not None:
            keep_days = spec.get("keep_days", keep_days)
        job_dir = start_next(job_dir, spec) if spec is not None else None
    if spool is not None and keep_days is not None:  # out of work: tidy the history, off the hot path
        prune_finished(spool, float(keep_days))
    return 0


def run(job_dir: Path) -> dict[str, Any] | None:
    """Run one job to its result; returns its spec, or None when another runner has it."""
    spool = spool_of(job_dir)
    if result_path(spool, job_dir.name).exists() or not claim(job_dir):
        return None
    spec = read_json(job_dir / SPEC)
    claimed = read_json(job_dir / CLAIM)
    if spec is None or claimed is None:
        return None  # cancelled and tidied away between the launch and the claim
    started = claimed["started_at"]
    stop_reason: list[str] = []
    env = {**os.environ, **spec["env"]}
    with open(log_path(spool, job_dir.name), "ab", buffering=0) as log:
        try:
            proc = subprocess.Popen(spec["argv"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=spec.get("cwd") or None,
                                    process_group=0, preexec_fn=_die_with_parent())
        except OSError as exc:
            log.write(f"cannot start the job: {exc}\n".encode())
            finish(job_dir, {"state": "FAILED", "exit_code": None, "started_at": started,
                             "stopped_at": time.time(), "reason": f"cannot start the job: {exc}"})
            return spec
        write_json_atomic(job_dir / PROCESS, {"pid": proc.pid})
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
            kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
        kill_group(proc.pid, signal.SIGKILL)  # anything the job left behind in its group
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
    finish(job_dir, {"state": state, "exit_code": code, "reason": reason,
                     "started_at": started, "stopped_at": time.time()})
    return spec


def start_next(job_dir: Path, spec: dict[str, Any]) -> Path | None:
    """Take the next queued job for this runner (and start runners for any other free slots), at once
    instead of at the engine's next poll."""
    return LocalExecutor(spool_of(job_dir), spec.get("max_parallel"), command=spec["argv"]).pump(take_one=True)


if __name__ == "__main__":
    sys.exit(run_jobs(Path(sys.argv[1])))
