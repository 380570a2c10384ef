"""Run one no-op job through the local executor, as `cyto doctor` does: the job command
(`CYTO_LOCAL_COMMAND` or the default) runs a one-line word count in a throwaway folder, so a broken
command shows up here, with its own log line, instead of as "exit code 1" on every real job."""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.executors import JobSpec, JobStatus, Resources, job_name
from bot.executors.local import DEFAULT_COMMAND, LocalExecutor
from bot.states import JobState
from container.contract import JobEnvironment

NO_OP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class NoOpResult:
    ok: bool
    command: str
    seconds: float
    detail: str  # the failure's reason and last log line, or "" when it succeeded


def run_no_op_job(command: Sequence[str] | None, timeout_s: float = NO_OP_TIMEOUT_S) -> NoOpResult:
    argv = tuple(command or DEFAULT_COMMAND)
    shown = shlex.join(argv)
    started = time.monotonic()
    # The runner may still be tidying up when the result is in: its spool is removed once idle.
    with tempfile.TemporaryDirectory(prefix="cyto-doctor-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "in" / "noop.txt").write_text("cyto doctor\n")
        executor = LocalExecutor(root / "spool", 1, argv)
        env = JobEnvironment(run_id="doctor", attempt=1, date="2000-01-01", batch="doctor", analysis="noop",
                             pipeline="wordcount", input_uri=(root / "in").as_uri(),
                             output_uri=(root / "out").as_uri(), logs_uri=(root / "logs").as_uri(), memory_mib=256)
        job_id = executor.submit(JobSpec(job_name("doctor", "noop", 1), env, Resources(timeout_s=int(timeout_s))))
        executor.flush()
        status: JobStatus | None = None
        while time.monotonic() - started < timeout_s:
            status = executor.describe([job_id]).get(job_id)
            if status is not None and status.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
                break
            time.sleep(0.1)
        else:
            executor.cancel(job_id, "cyto doctor gave up waiting")
            return NoOpResult(False, shown, time.monotonic() - started,
                              f"did not finish within {timeout_s:g} s")
        seconds = time.monotonic() - started
        detail = "" if status.state == JobState.SUCCEEDED else _failure(executor, status)
        _remove_when_idle(root / "spool")
        return NoOpResult(not detail, shown, seconds, detail)


def _failure(executor: LocalExecutor, status: JobStatus) -> str:
    """The failure's reason and the last line of the job's log."""
    log = (executor.read_log(status) or "").strip().splitlines()
    last = next((line for line in reversed(log) if line.strip()), "")
    reason = status.reason or f"exit code {status.exit_code}"
    tail = f"; its log ends: {last[:300]}" if last and last not in reason else ""
    return reason + tail


def _remove_when_idle(folder: Path, limit_s: float = 10.0) -> None:
    """Remove the throwaway folder once the job's runner has finished tidying it (it may still be
    writing for a moment after the result is in); left in the temp folder if it never settles."""
    deadline = time.monotonic() + limit_s
    while folder.exists() and time.monotonic() < deadline:
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            time.sleep(0.05)
