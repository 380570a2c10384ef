"""The job entrypoint: `python -m container.entrypoint`, run by every executor.

It reads the environment-variable contract (container/contract.py), stages the analysis folder
into `in/` (and into `batch/` the files the parameters name in the batch folder, `../panel.wsp`),
runs the pipeline into `out/`, writes `out/result.json`, makes CYTO_OUTPUT_URI hold exactly `out/`
(on failure too; files an earlier run or attempt left there are removed, result.json is written
last) and always uploads the attempt's log to CYTO_LOGS_URI.
The last log line is the outcome; on failure it is `ERROR: <reason>`. See container/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from container import __version__
from container.contract import (
    ATTEMPT,
    ERROR_PREFIX,
    EXIT_BAD_PARAMETERS,
    EXIT_FAILED,
    EXIT_OK,
    LOGS_URI,
    ContractError,
    JobEnvironment,
    attempt_log_name,
)
from container.pipelines import (
    BATCH_FOLDER,
    InputError,
    ParameterError,
    PipelineContext,
    PipelineError,
    UnknownPipeline,
    batch_files,
    checked_params,
    load,
    parameter_check,
)
from container.staging import (
    NotFound,
    StagingError,
    download_file,
    download_prefix,
    join_uri,
    replace_prefix,
    safe_target,
    upload_file,
)

EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERM'd process
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
RESULT_FILE = "result.json"
LOGGER_NAME = "cyto.job"
# Native thread pools (OpenBLAS, OpenMP, MKL) size themselves to the host's cores, not the job's
# vCPUs; oversubscribed, small matrix products on a 2-vCPU job ran ~50x slower.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(vcpus: float, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the native thread-pool sizes to the job's vCPUs (at least 1) where not set already."""
    target = os.environ if environ is None else environ
    count = str(max(1, int(vcpus)))
    limited = {}
    for name in THREAD_VARIABLES:
        if not target.get(name, "").strip():
            target[name] = count
            limited[name] = count
    return limited


class Terminated(BaseException):
    """Raised in the main thread when the job receives SIGTERM (or SIGINT).

    A BaseException, so that a pipeline's `except Exception` cannot swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class Outcome:
    exit_code: int = EXIT_OK
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "succeeded" if self.exit_code == EXIT_OK else "failed"

    def fail(self, exc: BaseException) -> None:
        """Record the first failure only: a later upload error must not hide the real reason."""
        if self.error is None:
            self.exit_code = exit_code_for(exc)
            self.error = reason(exc)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, ParameterError | InputError | ContractError | UnknownPipeline):
        return EXIT_BAD_PARAMETERS
    if isinstance(exc, Terminated):
        return exc.exit_code
    return EXIT_FAILED


def reason(exc: BaseException) -> str:
    """The one-line reason for the last log line: the message of an expected error, else its type too."""
    if isinstance(exc, Terminated):
        return f"terminated by {exc}"
    message = str(exc).strip()
    if isinstance(exc, PipelineError | ContractError | StagingError) and message:
        return message
    if isinstance(exc, UnknownPipeline) and exc.args:
        return str(exc.args[0])
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# -- logging ----------------------------------------------------------------------------------


class _Formatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z INFO message`; records logged with extra={"bare": True} as is."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "bare", False):
            return record.getMessage()
        return super().format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _FlushingFileHandler(logging.FileHandler):
    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self.flush()


@contextmanager
def job_logger(log_file: Path) -> Iterator[logging.Logger]:
    """A logger writing every line to stdout (flushed at once) and to `log_file`."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = _Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stdout),
        _FlushingFileHandler(log_file, encoding="utf-8"),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


@contextmanager
def termination_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into `Terminated` in the main thread, while the job runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        ignore_termination_signals()  # one is enough: let the log upload finish
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def ignore_termination_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- the job ----------------------------------------------------------------------------------


class Job:
    def __init__(self, env: Mapping[str, str], work: Path, log: logging.Logger, log_file: Path) -> None:
        self.env = env
        self.work = work
        self.log = log
        self.log_file = log_file
        self.input_dir = work / "in"
        self.batch_dir = work / "batch"  # only the batch-folder files the parameters name
        self.output_dir = work / "out"
        self.spec: JobEnvironment | None = None
        self.outcome = Outcome()

    def run(self) -> int:
        try:
            self._run_to_the_end()
        finally:
            ignore_termination_signals()
            self._upload_log()
        return self.outcome.exit_code

    def _run_to_the_end(self) -> None:
        try:
            self._run()
            ignore_termination_signals()  # the work is done: a late SIGTERM must not cut the report
        except Terminated as exc:
            # Termination wins over an earlier failure: the executor asked this job to stop.
            self.outcome = Outcome(exc.exit_code, reason(exc), self.outcome.summary)
            self.log.error("terminated by %s; uploading the log and stopping", exc)
        self._log_outcome()

    def _run(self) -> None:
        try:
            self.spec = JobEnvironment.from_env(self.env)
        except ContractError as exc:
            self.outcome.fail(exc)
            return
        started, clock = _now(), time.monotonic()
        self._describe(self.spec)
        self.input_dir.mkdir()
        self.output_dir.mkdir()
        try:
            self.outcome.summary = self._run_pipeline(self.spec)
        except Exception as exc:
            self._record_failure(exc)
        result = self._result(self.spec, started, time.monotonic() - clock)
        self._write_result(result)
        self._upload_outputs(self.spec)

    def _describe(self, spec: JobEnvironment) -> None:
        self.log.info(
            "cyto job %s attempt %d: pipeline %s, analysis %s (batch %s, %s); container %s",
            *(spec.run_id, spec.attempt, spec.pipeline, spec.analysis, spec.batch, spec.date, __version__),
        )

    def _run_pipeline(self, spec: JobEnvironment) -> dict[str, Any]:
        limited = limit_threads(spec.vcpus)  # before the pipeline (and numpy's BLAS) is imported
        if limited:
            self.log.info("native threads: %s", ", ".join(f"{k}={v}" for k, v in limited.items()))
        pipeline = load(spec.pipeline)
        self.log.info("staging %s", spec.input_uri)
        files = download_prefix(spec.input_uri, self.input_dir)
        self.log.info("staged %d file(s), %d bytes", len(files), sum(f.stat().st_size for f in files))
        self._stage_batch_files(spec)
        context = PipelineContext(
            input_dir=self.input_dir,
            output_dir=self.output_dir,
            params=dict(spec.params),
            log=self.log,
            analysis=spec.analysis,
            vcpus=spec.vcpus,
            memory_mib=spec.memory_mib,
            batch_dir=self.batch_dir if self.batch_dir.is_dir() else None,
        )
        summary = pipeline.run(context)
        return dict(summary) if isinstance(summary, Mapping) else {"value": summary}

    def _stage_batch_files(self, spec: JobEnvironment) -> None:
        """Stage the files the parameters (with params.json) name in the batch folder, and only those."""
        check = parameter_check(spec.pipeline)
        needed = batch_files(checked_params(check, spec.params, self.input_dir)) if check else {}
        for key, name in needed.items():
            if not spec.batch_uri:
                raise InputError(f"{key} names {BATCH_FOLDER}{name}, but {spec.input_uri} has no batch folder")
            uri = join_uri(spec.batch_uri, name)
            try:
                target = download_file(uri, safe_target(self.batch_dir, name))
            except NotFound:  # the bot checks this at plan time; the file went since, or a job by hand
                raise InputError(
                    f"{key} names {BATCH_FOLDER}{name}, which is not in the batch folder {spec.batch_uri}"
                ) from None
            self.log.info("staged %s%s from the batch folder, %d bytes", BATCH_FOLDER, name, target.stat().st_size)

    def _record_failure(self, exc: Exception) -> None:
        self.outcome.fail(exc)
        # An expected failure (a PipelineError the scientist can act on) says why in its ERROR line;
        # a traceback would only bury it. Anything unexpected keeps its traceback for the developer.
        if exit_code_for(exc) == EXIT_FAILED and not isinstance(exc, PipelineError | StagingError):
            # The traceback starts its own line, where log excerpts look for "Traceback (most recent...".
            self.log.error("the job failed:\n%s", "".join(traceback.format_exception(exc)).rstrip())

    def _result(self, spec: JobEnvironment, started: dt.datetime, duration: float) -> dict[str, Any]:
        result: dict[str, Any] = {
            "run_id": spec.run_id,
            "attempt": spec.attempt,
            "date": spec.date,
            "batch": spec.batch,
            "analysis": spec.analysis,
            "pipeline": spec.pipeline,
            "status": self.outcome.status,
            "exit_code": self.outcome.exit_code,
            "inputs": list_files(self.input_dir) + list_files(self.batch_dir, BATCH_FOLDER),
            "outputs": [f for f in list_files(self.output_dir) if f["path"] != RESULT_FILE],
            "started": started.isoformat(),
            "finished": _now().isoformat(),
            "duration_s": round(duration, 3),
            "container_version": __version__,
            "summary": self.outcome.summary,
        }
        if self.outcome.error is not None:
            result["error"] = self.outcome.error
        return result

    def _write_result(self, result: dict[str, Any]) -> None:
        try:
            text = json.dumps(result, indent=2, default=str) + "\n"
            (self.output_dir / RESULT_FILE).write_text(text, encoding="utf-8")
        except Exception as exc:
            self.log.error("could not write %s: %s", RESULT_FILE, exc)
            self.outcome.fail(exc)

    def _upload_outputs(self, spec: JobEnvironment) -> None:
        """Replace the output folder's content with this attempt's files, result.json last: what an
        earlier run or attempt left there and this one did not write is removed."""
        try:
            written, removed = replace_prefix(self.output_dir, spec.output_uri, RESULT_FILE)
        except Exception as exc:
            self.log.error("could not upload the outputs to %s: %s", spec.output_uri, exc)
            self.outcome.fail(exc)
            return
        self.log.info("uploaded %d file(s) to %s", len(written), spec.output_uri)
        if removed:
            shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
            self.log.info("removed %d file(s) an earlier run or attempt left there: %s", len(removed), shown)

    def _log_outcome(self) -> None:
        if self.outcome.error is None:
            self.log.info("succeeded")
        else:
            # The last line of every failed job: the executors and the bot show it as the reason.
            self.log.error("%s%s", ERROR_PREFIX, self.outcome.error, extra={"bare": True})

    def _upload_log(self) -> None:
        target = self._log_uri()
        if target is None:
            print("WARNING: no usable CYTO_LOGS_URI/CYTO_ATTEMPT; the log was not uploaded", file=sys.stderr)
            return
        try:
            upload_file(self.log_file, target)
        except Exception as exc:
            print(f"WARNING: could not upload the log to {target}: {exc}", file=sys.stderr)

    def _log_uri(self) -> str | None:
        if self.spec is not None:
            return join_uri(self.spec.logs_uri, self.spec.log_name)
        # A broken contract still leaves a log behind when the logs location can be read.
        logs_uri, attempt = self.env.get(LOGS_URI), self.env.get(ATTEMPT, "")
        if not logs_uri or not attempt.isdigit():
            return None
        return join_uri(logs_uri, attempt_log_name(int(attempt)))


def list_files(root: Path, prefix: str = "") -> list[dict[str, Any]]:
    """`[{"path": prefix + relative posix path, "bytes": size}]` of the files under `root`, sorted."""
    if not root.is_dir():
        return []
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted(
        ({"path": prefix + p.relative_to(root).as_posix(), "bytes": p.stat().st_size} for p in files),
        key=lambda f: f["path"],
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse_args(argv: Sequence[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m container.entrypoint",
        description="Run one cyto-bot analysis job, configured by CYTO_* environment variables "
        "(see container/README.md).",
    )
    parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    _parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a pipeline's print() reaches the log at once
    environ = os.environ if env is None else env
    with (
        tempfile.TemporaryDirectory(prefix="cyto-job-") as tmp,
        job_logger(Path(tmp) / "job.log") as log,
        termination_signals(),
    ):
        return Job(environ, Path(tmp), log, Path(tmp) / "job.log").run()


if __name__ == "__main__":
    sys.exit(main())
