"""Reading a run back: its summary, where its outputs and logs are, the lines of a log worth reading."""

from __future__ import annotations

from collections import Counter

from bot.engine.core import EngineCore
from bot.engine.errors import NotFound
from bot.engine.files import run_layout
from bot.engine.logs import last_run_attempt
from bot.engine.model import Failure, LogExcerpt, RunSummary
from bot.excerpt import select
from bot.executors import ExecutorError, JobStatus
from bot.ledger import Run
from bot.states import DISPLAY_ORDER, JobState
from bot.store import ObjectNotFound, StoreError


class Reading(EngineCore):
    """Reads a run back from the ledger, the store and the executor; changes nothing."""

    def summary(self, run_id: str) -> RunSummary:
        run = self.get_run(run_id)
        pairs = self.db.jobs_with_attempts(run_id)
        jobs = [job for job, _ in pairs]
        counts = Counter(job.state for job in jobs)
        durations = {job.analysis: attempt.stopped_at - attempt.started_at for job, attempt in pairs
                     if attempt.started_at and attempt.stopped_at}
        failures = [Failure(j.analysis, j.attempt, j.reason, j.exit_code, j.failure_rule) for j in jobs
                    if j.state == JobState.FAILED]
        reasons = Counter(f.reason or "unknown" for f in failures)
        end = run.finished_at or self.clock()
        return RunSummary(run, {s: counts.get(s, 0) for s in DISPLAY_ORDER}, len(jobs), end - run.created_at,
                          durations, failures, dict(reasons))

    def output_uri(self, run: Run, analysis: str | None = None) -> str:
        """Where the run's outputs are: the batch's Output folder, or one analysis's."""
        ref = run_layout(run)
        return self.store.uri_for(ref.analysis(analysis).output_prefix if analysis else ref.output_prefix)

    def log_uri(self, run: Run, analysis: str, attempt: int) -> str:
        """Where the store keeps exactly this attempt's log."""
        return self.store.uri_for(run_layout(run).analysis(analysis).attempt_log_key(run.id, attempt))

    def log_excerpt(self, run_id: str, analysis: str, attempt: int | None = None, *,
                    tail: int = 15, max_chars: int = 2500) -> LogExcerpt:
        """The lines worth reading from an attempt's log: from the executor's own log when it has
        one, otherwise from the copy the job wrote under Logs/."""
        run = self.get_run(run_id)
        job = self.db.job(run_id, analysis)
        if job is None:
            raise NotFound(f"run {run_id} has no analysis {analysis!r}")
        number = attempt or last_run_attempt(self.db.attempts(job.id), job.attempt)
        record = self.db.attempt(job.id, number)
        if record is None:
            raise NotFound(f"{analysis} has no attempt {number}")
        log_key = run_layout(run).analysis(analysis).attempt_log_key(run.id, number)
        text, source = None, None
        status = JobStatus(record.executor_job_id or "", record.state, record.reason, record.exit_code,
                           record.log_ref, record.started_at, record.stopped_at)
        if record.executor_job_id:
            try:
                text = self.executor.read_log(status)
            except ExecutorError:
                text = None
            source = self.executor.name if text else None
        if not text:
            try:
                text = self.store.read_bytes(log_key).decode(errors="replace")
                source = "store"
            except (ObjectNotFound, StoreError):
                text = None
        explanation = self.executor.explain(status, {**run.resources, **(record.resources or {})})
        excerpt = select(text, tail=tail, max_chars=max_chars) if text else None
        return LogExcerpt(analysis, number, excerpt, source, self.store.uri_for(log_key), explanation)
