"""A shim that lets moto's Batch run a job as a local process instead of a Docker container.

Why: moto 5.2.5 (pinned in requirements-test.txt) runs each Batch job in Docker, which this test
environment does not have; its Docker-less "simple" mode only marks jobs SUCCEEDED or FAILED and
runs nothing. For end-to-end tests we want the real thing: the job definition's command
(`python -m container.entrypoint`) run with the job's environment from SubmitJob, reading its input
from moto's S3 and writing outputs and its log copy back there.

How: moto runs every submitted job in a thread (`moto.batch.models.Job.run`). The shim replaces that
method, server side only, for the duration of a test; boto3 and our code are untouched. The
replacement
- holds the job in RUNNABLE while `hold` is set (so a test can cancel a queued job), then moves it
  through STARTING and RUNNING as Batch does;
- runs the command as a subprocess, terminating it on TerminateJob or when `attemptDurationSeconds`
  passes (statusReason "Job attempt duration exceeded timeout", as Batch says);
- writes every output line into moto's CloudWatch Logs under the job's stream in `/aws/batch/job`,
  which moto's own simple mode never creates;
- records the exit code and sets SUCCEEDED/FAILED with Batch's statusReason. moto's DescribeJobs
  leaves `container.exitCode` and `container.reason` out, so the shim adds them as AWS sends them.

Job state is driven by the shim alone: moto's state manager is set to "manual" progression with an
unreachable tick count, so the state only changes when the shim sets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from moto.batch import models as batch_models
from moto.moto_api import state_manager

from tests.timeouts import seconds

ROOT = Path(__file__).resolve().parents[2]
HOST_STATUS_REASON = "Essential container in task exited"
TIMEOUT_STATUS_REASON = "Job attempt duration exceeded timeout"


class EntrypointShim:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env  # the process environment of every job (AWS endpoint, credentials, PYTHONPATH)
        self.hold = threading.Event()  # set: jobs wait in RUNNABLE
        self.started: list[str] = []  # job names, in the order their processes started
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        shim = self
        original_details = batch_models.Job._container_details

        def run(job: Any) -> None:
            shim.run(job)

        def container_details(job: Any) -> dict[str, Any]:
            details = original_details(job)
            if job.exit_code is not None:
                details["exitCode"] = job.exit_code
            requirements = job.container_overrides.get("resourceRequirements")
            if requirements:
                details["resourceRequirements"] = requirements
            if getattr(job, "shim_container_reason", None):
                details["reason"] = job.shim_container_reason
            return details

        monkeypatch.setattr(batch_models.Job, "run", run)
        monkeypatch.setattr(batch_models.Job, "_container_details", container_details)
        state_manager.set_transition("batch::job", {"progression": "manual", "times": 10**9})

    def uninstall(self) -> None:
        state_manager.unset_transition("batch::job")

    # -- one job ------------------------------------------------------------------------------
    def run(self, job: Any) -> None:
        try:
            self._run(job)
        except Exception as exc:  # pragma: no cover - a shim bug must show up as a failed job
            job.job_stopped_reason = f"shim error: {exc!r}"
            job._mark_stopped(success=False)

    def _run(self, job: Any) -> None:
        job.status = "RUNNABLE"
        while self.hold.is_set() and not job.stop:
            time.sleep(0.02)
        if job.stop:  # CancelJob while queued: moto's terminate() set the reason
            job._mark_stopped(success=False)
            return
        job.status = "STARTING"
        job.job_started_at = datetime.now()
        job.log_stream_name = job._stream_name
        job._start_attempt()
        env = {**self.env, **{e["name"]: e["value"] for e in job._get_container_property("environment", [])}}
        command = [sys.executable if part == "python" else part
                   for part in job._get_container_property("command", [])]
        with self._lock:
            self.started.append(job.job_name)
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        job.status = "RUNNING"
        lines: list[tuple[int, str]] = []
        reader = threading.Thread(target=_read_lines, args=(process, lines), daemon=True)
        reader.start()
        duration = job._get_attempt_duration()
        deadline = time.monotonic() + duration if duration else None
        timed_out = False
        while process.poll() is None:
            if job.stop:
                process.terminate()
            elif deadline is not None and time.monotonic() > deadline:
                timed_out = True
                process.kill()
            time.sleep(0.02)
        reader.join(timeout=seconds(10))
        self._write_log(job, lines)
        job.exit_code = process.returncode if process.returncode >= 0 else 128 - process.returncode
        if timed_out:
            job.job_stopped_reason = TIMEOUT_STATUS_REASON
        elif not job.stop:
            job.job_stopped_reason = HOST_STATUS_REASON
        job._mark_stopped(success=process.returncode == 0 and not job.stop and not timed_out)

    def _write_log(self, job: Any, lines: list[tuple[int, str]]) -> None:
        logs = job._log_backend
        logs.ensure_log_group(job._log_group)
        logs.ensure_log_stream(job._log_group, job.log_stream_name)
        if lines:
            logs.put_log_events(job._log_group, job.log_stream_name,
                                [{"timestamp": ts, "message": text} for ts, text in lines])


def _read_lines(process: subprocess.Popen[bytes], out: list[tuple[int, str]]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        out.append((int(time.time() * 1000), raw.decode(errors="replace").rstrip("\n")))


def job_env(endpoint: str) -> dict[str, str]:
    """What a job process sees besides its Batch environment: moto as AWS, the repo importable."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CYTO_", "MOTO_"))}
    return {**keep, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
