"""A local process pool as the executor: the embedded default for a laptop.

The spool (`CYTO_LOCAL_SPOOL`) keeps live jobs apart from history, so starting the next job costs
the same with 5 or 50,000 finished jobs behind it:

    jobs/NAME/      a live job: its spec, launch and claim records, its process id, a cancel request
    queue/SEQ-NAME  a job waiting for a free slot; SEQ (submit time in ns) orders the queue
    done/NAME.json  a finished job's result, looked up by name, never listed on the hot path
    logs/NAME.log   a job's output (what `cyto logs` shows), written in place from the start

At most `max_parallel` jobs run at once; queued jobs are started whenever the engine submits or polls
(and by a runner whose job just finished), so a restarted process picks up where the last one
stopped. Finished jobs' results and logs are kept for `keep_days` (`CYTO_LOCAL_KEEP_DAYS`), long
after the engine has recorded them in the run database; after that the job's own copy of its log
in the store (Logs/) remains. Pruning lists the history, so a runner does it when it runs out of
work (at most hourly), never the engine on its way to a poll.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bot import defaults
from bot.executors import ExecutorError, JobSpec, JobStatus
from bot.executors.local_spool import (
    CANCEL,
    CLAIM,
    DONE,
    JOBS,
    LOGS,
    LOST_REASON,
    PROCESS,
    QUEUE,
    SPEC,
    finish,
    kill_group,
    log_path,
    read_json,
    result_path,
    write_json_atomic,
)
from bot.states import JobState

LAUNCHED = "launched.json"
# A launch whose runner has not claimed the job within this time is assumed lost and relaunched.
LAUNCH_GRACE_S = 30.0
# How long a lost runner's job group may take to die before the job is reported lost anyway.
GROUP_DEATH_WAIT_S = 5.0
DEFAULT_COMMAND = (sys.executable, "-m", "container.entrypoint")
DEFAULT_KEEP_DAYS = defaults.LOCAL_KEEP_DAYS
PRUNE_EVERY_S = 3600.0
PRUNED_STAMP = ".pruned"


class LocalExecutor:
    name = "local"
    submit_concurrency = 1  # submitting writes a few small files under one lock

    def __init__(self, spool: str | os.PathLike[str], max_parallel: int | None = None,
                 command: Sequence[str] = DEFAULT_COMMAND, keep_days: float = DEFAULT_KEEP_DAYS) -> None:
        self.spool = Path(spool).expanduser().resolve()
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self.command = list(command)
        self.keep_days = keep_days
        self._children: list[subprocess.Popen[bytes]] = []
        try:
            for folder in (JOBS, QUEUE, DONE, LOGS):
                (self.spool / folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExecutorError(f"cannot create the local job spool {self.spool}: {exc.strerror} "
                                "(CYTO_LOCAL_SPOOL)") from exc
        with self._lock():
            self._adopt_legacy_jobs()

    # -- the Executor interface -------------------------------------------------------------
    def check(self) -> None:
        """The spool's folders exist and can be written: what every submission needs."""
        for folder in (JOBS, QUEUE, DONE, LOGS):
            path = self.spool / folder
            if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
                raise ExecutorError(f"cannot write the local job spool {self.spool}: {path} is missing or "
                                    "read-only (CYTO_LOCAL_SPOOL)")

    def submit(self, spec: JobSpec) -> str:
        with self._lock():
            if self.find(spec.name) is None:
                job_dir = self.spool / JOBS / spec.name
                job_dir.mkdir(exist_ok=True)
                queued_at = time.time_ns()
                marker = f"{queued_at:020d}-{spec.name}"
                write_json_atomic(job_dir / SPEC, {
                    "argv": self.command, "env": spec.environment(), "timeout_s": spec.resources.timeout_s,
                    "queued_at": queued_at / 1e9, "queue_marker": marker, "cwd": os.getcwd(),
                    "max_parallel": self.max_parallel, "keep_days": self.keep_days,
                })
                (self.spool / QUEUE / marker).touch()
        # Jobs start in flush() (or the next describe()), once per batch of submissions.
        return spec.name

    def flush(self) -> None:
        """Start queued jobs now; the engine calls this after submitting a batch of jobs."""
        self.pump()

    def find(self, job_name: str) -> str | None:
        known = (result_path(self.spool, job_name).exists() or (self.spool / JOBS / job_name / SPEC).exists()
                 or (self.spool / job_name / SPEC).exists())
        return job_name if known else None

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
        job_dir = self.spool / JOBS / job_id
        with self._lock():
            if not (job_dir / SPEC).exists() or result_path(self.spool, job_id).exists():
                return
            (job_dir / CANCEL).write_text(reason)
            claimed = read_json(job_dir / CLAIM)
            if claimed is None:
                finish(job_dir, {"state": "CANCELLED", "reason": reason, "exit_code": None,
                                 "started_at": None, "stopped_at": time.time()})
            elif _alive(claimed["pid"], self.spool):
                os.kill(claimed["pid"], signal.SIGTERM)

    def read_log(self, status: JobStatus) -> str | None:
        for path in (log_path(self.spool, status.job_id), self.spool / status.job_id / "output.log"):
            try:
                return path.read_text(errors="replace")
            except FileNotFoundError:
                continue
        return None

    def explain(self, status: JobStatus, resources: Mapping[str, Any]) -> str | None:
        """None: a local job's own log says why it stopped (a timeout or a cancel is written there)."""
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
        """Start queued jobs while fewer than max_parallel are running. Call with the lock held.
        Looks at live jobs only (jobs/ and queue/), never at finished ones."""
        self._children = [child for child in self._children if child.poll() is None]  # reap finished runners
        jobs, queue = self.spool / JOBS, self.spool / QUEUE
        markers = sorted(os.listdir(queue))
        waiting = {marker.partition("-")[2] for marker in markers}
        running, relaunch = 0, []
        now = time.time()
        for name in os.listdir(jobs):
            if name in waiting:
                continue
            job_dir = jobs / name
            if result_path(self.spool, name).exists():  # finished; its runner died before tidying up
                shutil.rmtree(job_dir, ignore_errors=True)
                continue
            claimed = read_json(job_dir / CLAIM)
            if claimed is not None:
                if _alive(claimed["pid"], self.spool):
                    running += 1
                else:
                    _stop_lost(job_dir, claimed)
                continue
            launched = read_json(job_dir / LAUNCHED)
            if launched is not None and now - launched["at"] < LAUNCH_GRACE_S:
                running += 1
            elif (job_dir / SPEC).exists():
                relaunch.append(job_dir)
        candidates = relaunch + [(queue / marker, jobs / marker.partition("-")[2]) for marker in markers]
        taken = None
        free = max(0, self.max_parallel - running)
        for candidate in candidates:
            if free == 0:
                break
            marker, job_dir = candidate if isinstance(candidate, tuple) else (None, candidate)
            if marker is not None:
                marker.unlink(missing_ok=True)
                if not (job_dir / SPEC).exists() or result_path(self.spool, job_dir.name).exists():
                    continue  # a marker left behind by a crash
            write_json_atomic(job_dir / LAUNCHED, {"at": time.time()})
            free -= 1
            if take_one and taken is None:
                taken = job_dir
                continue
            self._children.append(subprocess.Popen(
                [sys.executable, "-m", "bot.executors.local_runner", str(job_dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True))
        return taken

    def _status(self, job_id: str) -> JobStatus | None:
        log_ref = str(log_path(self.spool, job_id))
        job_dir = self.spool / JOBS / job_id
        result = read_json(result_path(self.spool, job_id))
        if result is None:
            claimed = read_json(job_dir / CLAIM)
            if claimed is not None:
                return JobStatus(job_id, JobState.RUNNING, log_ref=log_ref, started_at=claimed["started_at"])
            if (job_dir / SPEC).exists():
                return JobStatus(job_id, JobState.QUEUED, log_ref=log_ref)
            result = read_json(result_path(self.spool, job_id))  # it may have finished meanwhile
        if result is None:
            return self._legacy_status(job_id)
        return JobStatus(job_id, JobState(result["state"]), reason=result.get("reason"),
                         exit_code=result.get("exit_code"), log_ref=log_ref,
                         started_at=result.get("started_at"), stopped_at=result.get("stopped_at"))

    def prune(self, force: bool = False) -> int:
        """Forget finished jobs older than keep_days, at most once an hour unless forced; returns how
        many files went. Runners call this when they run out of work, so it never delays a poll."""
        return prune_finished(self.spool, self.keep_days, force)

    # -- a spool written by an earlier version (one folder per job at the top level) --------------
    def _legacy_dirs(self) -> list[Path]:
        return [Path(e.path) for e in os.scandir(self.spool)
                if e.is_dir() and e.name not in (JOBS, QUEUE, DONE, LOGS) and os.path.exists(Path(e.path) / SPEC)]

    def _adopt_legacy_jobs(self) -> None:
        """Move jobs of the earlier layout into this one: finished ones to done/ and logs/, waiting
        ones to the queue. Jobs still running under an old runner stay until they finish."""
        for old in self._legacy_dirs():
            name = old.name
            result = read_json(old / "result.json")
            claimed = read_json(old / CLAIM)
            if result is None and claimed is not None and _alive(claimed["pid"], self.spool):
                continue
            if result is None and claimed is not None:
                result = {"state": "FAILED", "exit_code": None, "reason": LOST_REASON,
                          "started_at": claimed.get("started_at"), "stopped_at": time.time()}
            if (old / "output.log").exists():
                os.replace(old / "output.log", log_path(self.spool, name))
            if result is not None:
                write_json_atomic(result_path(self.spool, name), result)
                shutil.rmtree(old, ignore_errors=True)
                continue
            spec = read_json(old / SPEC) or {}
            marker = f"{int(float(spec.get('queued_at', time.time())) * 1e9):020d}-{name}"
            (old / LAUNCHED).unlink(missing_ok=True)
            write_json_atomic(old / SPEC, {**spec, "queue_marker": marker})
            os.replace(old, self.spool / JOBS / name)
            (self.spool / QUEUE / marker).touch()

    def _legacy_status(self, job_id: str) -> JobStatus | None:
        old = self.spool / job_id
        log_ref = str(old / "output.log")
        result = read_json(old / "result.json")
        if result is not None:
            return JobStatus(job_id, JobState(result["state"]), reason=result.get("reason"),
                             exit_code=result.get("exit_code"), log_ref=log_ref,
                             started_at=result.get("started_at"), stopped_at=result.get("stopped_at"))
        claimed = read_json(old / CLAIM)
        if claimed is not None:
            if _alive(claimed["pid"], self.spool):
                return JobStatus(job_id, JobState.RUNNING, log_ref=log_ref, started_at=claimed["started_at"])
            return JobStatus(job_id, JobState.FAILED, reason=LOST_REASON, log_ref=log_ref,
                             started_at=claimed.get("started_at"), stopped_at=time.time())
        return None


def prune_finished(spool: Path, keep_days: float, force: bool = False) -> int:
    """Delete results and logs of jobs that finished more than keep_days ago (this lists the history,
    so it runs in a runner's spare time, at most once per PRUNE_EVERY_S)."""
    stamp = spool / PRUNED_STAMP
    now = time.time()
    if not force:
        with suppress(FileNotFoundError):
            if now - stamp.stat().st_mtime < PRUNE_EVERY_S:
                return 0
    stamp.touch()  # before the scan: a second runner running out of work now skips it
    cutoff = now - keep_days * 86400
    removed = 0
    for folder in (DONE, LOGS):
        for entry in os.scandir(spool / folder):
            name = entry.name.rsplit(".", 1)[0]
            with suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff and not (spool / JOBS / name).exists():
                    os.unlink(entry.path)
                    removed += 1
    return removed


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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Killed members wait as zombies for their new parent to reap them; they run nothing.
    return _running(pgid) or _has_running_member(pgid)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _has_running_member(pgid: int) -> bool:
    """Whether a process other than the leader is still running in the group (a job's children)."""
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _stop_lost(job_dir: Path, claimed: dict) -> None:
    """A runner died with its job: make sure the job's whole process group is gone (it must not go on
    writing beside its retry), then record the attempt as lost."""
    process = read_json(job_dir / PROCESS)
    if process is not None:
        pgid = int(process["pid"])
        kill_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + GROUP_DEATH_WAIT_S
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
    finish(job_dir, {"state": "FAILED", "exit_code": None, "started_at": claimed.get("started_at"),
                     "stopped_at": time.time(), "reason": LOST_REASON})
