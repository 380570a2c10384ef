"""A local process pool as the executor: the embedded default for a laptop.

Each job is a directory in the spool (`CYTO_LOCAL_SPOOL`) holding its spec, its output and, once
finished, its result. At most `max_parallel` jobs run at once; queued jobs are started whenever the
engine submits or polls, so a restarted process picks up exactly where the last one stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bot.executors import ExecutorError, JobSpec, JobStatus
from bot.executors.local_runner import CANCEL, CLAIM, OUTPUT, RESULT, SPEC, write_json_atomic
from bot.states import JobState

LAUNCHED = "launched.json"
# A launch whose runner has not claimed the job within this time is assumed lost and relaunched.
LAUNCH_GRACE_S = 30.0
DEFAULT_COMMAND = (sys.executable, "-m", "container.entrypoint")


class LocalExecutor:
    name = "local"

    def __init__(self, spool: str | os.PathLike[str], max_parallel: int | None = None,
                 command: Sequence[str] = DEFAULT_COMMAND) -> None:
        self.spool = Path(spool).expanduser().resolve()
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self.command = list(command)
        self._children: list[subprocess.Popen[bytes]] = []
        try:
            self.spool.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExecutorError(f"cannot create the local job spool {self.spool}: {exc.strerror} "
                                "(CYTO_LOCAL_SPOOL)") from exc

    # -- the Executor interface -------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        job_dir = self.spool / spec.name
        with self._lock():
            if not (job_dir / SPEC).exists():
                job_dir.mkdir(exist_ok=True)
                write_json_atomic(job_dir / SPEC, {
                    "argv": self.command, "env": spec.environment(), "timeout_s": spec.resources.timeout_s,
                    "queued_at": time.time(), "cwd": os.getcwd(), "max_parallel": self.max_parallel,
                })
        # Jobs start in flush() (or the next describe()): starting them here would rescan the spool per job.
        return spec.name

    def flush(self) -> None:
        """Start queued jobs now; the engine calls this after submitting a batch of jobs."""
        self.pump()

    def find(self, job_name: str) -> str | None:
        return job_name if (self.spool / job_name / SPEC).exists() else None

    def describe(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        with self._lock():
            self._pump()
        statuses = {}
        for job_id in job_ids:
            status = self._status(job_id)
            if status is not None:
                statuses[job_id] = status
        return statuses

    def cancel(self, job_id: str, reason: str) -> None:
        job_dir = self.spool / job_id
        with self._lock():
            if not (job_dir / SPEC).exists() or (job_dir / RESULT).exists():
                return
            (job_dir / CANCEL).write_text(reason)
            claimed = _read_json(job_dir / CLAIM)
            if claimed is None:
                write_json_atomic(job_dir / RESULT, {"state": "CANCELLED", "reason": reason, "exit_code": None,
                                                     "started_at": None, "stopped_at": time.time()})
            elif _alive(claimed["pid"], self.spool):
                os.kill(claimed["pid"], signal.SIGTERM)

    def read_log(self, status: JobStatus) -> str | None:
        path = self.spool / status.job_id / OUTPUT
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return None

    # -- internals ----------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        # One lock for the spool: the CLI and the bot may share it, and only one may start jobs.
        with open(self.spool / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def pump(self, take_one: bool = False) -> Path | None:
        """Start queued jobs while slots are free. With `take_one`, the first free job is handed to the
        caller instead (a runner whose job finished runs the next one itself, saving a process start)."""
        with self._lock():
            return self._pump(take_one)

    def _pump(self, take_one: bool = False) -> Path | None:
        """Start queued jobs while fewer than max_parallel are running. Call with the lock held."""
        self._children = [child for child in self._children if child.poll() is None]  # reap finished runners
        running, queued = 0, []
        now = time.time()
        for entry in os.scandir(self.spool):
            if not entry.is_dir():
                continue
            job_dir = Path(entry.path)
            if (job_dir / RESULT).exists():
                continue
            claimed = _read_json(job_dir / CLAIM)
            if claimed is not None:
                if _alive(claimed["pid"], self.spool):
                    running += 1
                else:
                    _record_lost(job_dir, claimed)
                continue
            launched = _read_json(job_dir / LAUNCHED)
            if launched is not None and now - launched["at"] < LAUNCH_GRACE_S:
                running += 1
                continue
            spec = _read_json(job_dir / SPEC)
            if spec is not None:
                queued.append((spec["queued_at"], job_dir))
        taken = None
        for _, job_dir in sorted(queued)[: max(0, self.max_parallel - running)]:
            write_json_atomic(job_dir / LAUNCHED, {"at": time.time()})
            if take_one and taken is None:
                taken = job_dir
                continue
            self._children.append(subprocess.Popen(
                [sys.executable, "-m", "bot.executors.local_runner", str(job_dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True))
        return taken

    def _status(self, job_id: str) -> JobStatus | None:
        job_dir = self.spool / job_id
        log_ref = str(job_dir / OUTPUT)
        result = _read_json(job_dir / RESULT)
        if result is not None:
            return JobStatus(job_id, JobState(result["state"]), reason=result.get("reason"),
                             exit_code=result.get("exit_code"), log_ref=log_ref,
                             started_at=result.get("started_at"), stopped_at=result.get("stopped_at"))
        claimed = _read_json(job_dir / CLAIM)
        if claimed is not None:
            return JobStatus(job_id, JobState.RUNNING, log_ref=log_ref, started_at=claimed["started_at"])
        if (job_dir / SPEC).exists():
            return JobStatus(job_id, JobState.QUEUED, log_ref=log_ref)
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        # A claim file is created empty and filled an instant later; treat it as not there yet.
        return None


def _alive(pid: int, spool: Path) -> bool:
    """Whether `pid` is a runner of this spool (a runner works through several jobs in turn)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    # The pid may have been reused by an unrelated process: it must be a runner of this spool.
    return b"bot.executors.local_runner" in cmdline and str(spool).encode() in cmdline


def _record_lost(job_dir: Path, claimed: dict) -> None:
    write_json_atomic(job_dir / RESULT, {
        "state": "FAILED", "exit_code": None, "started_at": claimed.get("started_at"), "stopped_at": time.time(),
        "reason": "the job's process disappeared (killed, or the machine restarted)",
    })
