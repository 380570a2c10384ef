"""The run engine: plan a run, record it, submit, poll, retry, cancel, summarise.

The run database is the truth; the engine holds no run state of its own, so a restarted process
resumes every unfinished run by polling. Front ends (CLI, Slack, notebook) call the engine and
subscribe to its events; none of them contains run logic.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bot import catalog
from bot.db import Attempt, Job, Run, RunDB, Transition
from bot.excerpt import Excerpt, select
from bot.executors import Executor, ExecutorError, JobSpec, JobStatus, Resources, job_name
from bot.layout import BatchRef, LayoutError
from bot.states import ACTIVE, DISPLAY_ORDER, JobState, RunState, final_run_state
from bot.store import ObjectNotFound, Store, StoreError
from container.contract import JobEnvironment, attempt_log_name
from container.pipelines import available as available_pipelines

SUBMIT_CHUNK = 100
# A reason that says no more than the exit code; the job's own ERROR line says more.
_GENERIC_REASON = re.compile(r"^(exit code -?\d+)?$")
# A job the executor has never heard of this long after submission is reported lost.
LOST_AFTER_S = 300.0


class EngineError(RuntimeError):
    """A request the engine refuses; the message says why and what to do instead."""


class NotFound(EngineError):
    pass


class AlreadyRetried(EngineError):
    """Someone retried this analysis already (a double click, or two people at once)."""

    def __init__(self, analysis: str, by: str | None, state: JobState, attempt: int) -> None:
        super().__init__(f"{analysis} was already retried by {by or 'someone'}: attempt {attempt} is "
                         f"{state.value.lower()}")
        self.by = by


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    JOB_CHANGED = "job_changed"  # queued / running / succeeded
    JOB_RETRYING = "job_retrying"  # an attempt failed and an automatic retry follows
    JOB_FAILED = "job_failed"  # failed for good
    JOB_RETRIED = "job_retried"  # a person asked for a retry
    RUN_CANCELLING = "run_cancelling"
    RUN_FINISHED = "run_finished"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    run_id: str
    analysis: str | None = None
    state: str | None = None
    attempt: int | None = None
    reason: str | None = None
    by: str | None = None


Listener = Callable[[Event], None]


@dataclass(frozen=True)
class Plan:
    ref: BatchRef
    analyses: list[str]
    pipeline: str
    resources: Resources
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    analysis: str
    attempts: int
    reason: str | None
    exit_code: int | None


@dataclass(frozen=True)
class RunSummary:
    run: Run
    counts: dict[JobState, int]
    total: int
    wall_s: float
    durations: dict[str, float]  # per analysis, of its last attempt that ran
    failures: list[Failure]
    reasons: dict[str, int]  # failure reason -> number of analyses

    @property
    def finished(self) -> bool:
        return self.run.state.is_finished

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED))

    def count(self, state: JobState) -> int:
        return self.counts.get(state, 0)


@dataclass(frozen=True)
class LogExcerpt:
    analysis: str
    attempt: int
    excerpt: Excerpt | None
    source: str | None  # where the lines came from ("executor" log or the store's Logs/ copy)
    full_log: str  # where the whole log is
    explanation: str | None  # a plain-words reason when the executor itself stopped the job


class Engine:
    def __init__(self, store: Store, executor: Executor, db: RunDB, *,
                 clock: Callable[[], float] = time.time, default_retries: int = 2) -> None:
        self.store = store
        self.executor = executor
        self.db = db
        self.clock = clock
        self.default_retries = default_retries
        self._listeners: list[Listener] = []
        # Identifies this process's claims on attempts it is submitting (see _stale_tokens).
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _publish(self, events: Iterable[Event]) -> None:
        for event in events:
            for listener in list(self._listeners):
                listener(event)

    # -- planning -----------------------------------------------------------------------------
    def plan(self, date: str, batch: str, pipeline: str = "cytometry", resources: Resources | None = None,
             params: Mapping[str, Any] | None = None) -> Plan:
        """Check a run request against the store without recording anything."""
        if pipeline not in available_pipelines():
            raise EngineError(f"unknown pipeline {pipeline!r}; choose one of: {', '.join(available_pipelines())}")
        resources = resources or Resources(retries=self.default_retries)
        validate_resources(resources)
        ref, analyses = catalog.resolve_batch(self.store, date, batch)
        self.check_executor()
        return Plan(ref, analyses, pipeline, resources, dict(params or {}))

    def check_executor(self) -> None:
        """Refuse a run up front when the executor is misconfigured (e.g. a missing job queue)."""
        check = getattr(self.executor, "check", None)
        if callable(check):
            try:
                check()
            except ExecutorError as exc:
                raise EngineError(str(exc)) from exc

    def start_run(self, plan: Plan, requested_by: str, *, slack_channel: str | None = None,
                  slack_thread_ts: str | None = None, submit: bool = True, hold: bool = False) -> Run:
        """Record the run and the intent to submit each analysis, then submit them. A held run
        (`hold=True`) is submitted by nobody, not even a poll, until `release` (or `abandon`)."""
        now = self.clock()
        for _ in range(10):
            run = Run(id=new_run_id(), date=plan.ref.date, batch=plan.ref.batch, pipeline=plan.pipeline,
                      params=dict(plan.params), resources=plan.resources.as_dict(), executor=self.executor.name,
                      store=self.store.uri, requested_by=requested_by,
                      state=RunState.HELD if hold else RunState.ACTIVE, created_at=now,
                      finished_at=None, cancel_requested_by=None, slack_channel=slack_channel,
                      slack_thread_ts=slack_thread_ts, version=0)
            names = [job_name(run.id, a, 1) for a in plan.analyses]
            if self.db.create_run(run, plan.analyses, plan.resources.retries + 1, names, now):
                break
        else:  # pragma: no cover - 10 collisions of 24 random bits
            raise EngineError("could not allocate a run id")
        self._publish([Event(EventKind.RUN_STARTED, run.id, by=requested_by)])
        if submit and not hold:
            self.submit_pending(run.id)
        return self.get_run(run.id)

    def release(self, run_id: str, slack_channel: str, slack_thread_ts: str) -> bool:
        """End a run's hold (its Slack thread exists); the next poll, or `submit_pending`, submits it."""
        return self.db.release_run(run_id, slack_channel, slack_thread_ts)

    def abandon(self, run_id: str, reason: str) -> bool:
        """Give up a held run with nothing submitted."""
        if not self.db.abandon_run(run_id, reason, self.clock()):
            return False
        self._publish([Event(EventKind.RUN_FINISHED, run_id, state=RunState.CANCELLED.value, reason=reason)])
        return True

    # -- submission ---------------------------------------------------------------------------
    def submit_pending(self, run_id: str) -> int:
        """Submit every attempt of the run that is recorded but not yet with the executor.

        An attempt is claimed (compare-and-set) before it is submitted. A claim left by a process that
        died may have reached the executor already, so those attempts are looked up by their
        deterministic job name first and only submitted when the executor has never seen them."""
        run = self.get_run(run_id)
        if run.state != RunState.ACTIVE:
            return 0
        stale = self._stale_tokens(run_id)
        submitted = 0
        workers = max(1, int(getattr(self.executor, "submit_concurrency", 1)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            mapper = pool.map if workers > 1 else map
            while True:
                claimed = self.db.claim_pending(run_id, self.token, self.clock(), stale, SUBMIT_CHUNK)
                if not claimed:
                    break
                results = list(mapper(lambda pair: self._submit_one(run, *pair), claimed))
                ok = [(job.id, job.attempt, job_id) for (job, _), (job_id, _) in zip(claimed, results, strict=True)
                      if job_id]
                submitted += self.db.record_submitted(run_id, ok, self.token, self.clock())
                for (job, _), (job_id, error) in zip(claimed, results, strict=True):
                    if not job_id:
                        self.db.record_submit_failed(run_id, job.id, job.attempt, self.token, error or "",
                                                     self.clock())
                        self._publish([Event(EventKind.JOB_FAILED, run_id, job.analysis, JobState.FAILED,
                                             job.attempt, error)])
        flush = getattr(self.executor, "flush", None)
        if submitted and callable(flush):
            flush()
        return submitted

    def _submit_one(self, run: Run, job: Job, before: Attempt) -> tuple[str | None, str | None]:
        try:
            if before.claim_token is not None:
                found = self.executor.find(before.job_name)
                if found:
                    return found, None
            return self.executor.submit(self.job_spec(run, job, before)), None
        except ExecutorError as exc:
            return None, f"could not submit: {exc}"

    def _stale_tokens(self, run_id: str) -> list[str]:
        """Claims held by processes that no longer exist: a dead pid on this host, or another host
        (a replaced container); a live process on this host is still submitting them."""
        host = socket.gethostname()
        stale = []
        for token in self.db.claim_tokens(run_id):
            if token == self.token:
                continue
            token_host, _, rest = token.partition(":")
            pid = rest.partition(":")[0]
            if token_host != host or not pid.isdigit() or not _pid_alive(int(pid)):
                stale.append(token)
        return stale

    def job_spec(self, run: Run, job: Job, attempt: Attempt) -> JobSpec:
        ref = BatchRef(run.date, run.batch).analysis(job.analysis)
        resources = Resources(**{**run.resources, **(attempt.resources or {})})
        env = JobEnvironment(
            run_id=run.id, attempt=attempt.attempt, date=run.date, batch=run.batch, analysis=job.analysis,
            pipeline=run.pipeline, input_uri=self.store.uri_for(ref.input_prefix),
            output_uri=self.store.uri_for(ref.output_prefix), logs_uri=self.store.uri_for(ref.logs_prefix),
            params=run.params, vcpus=resources.vcpus, memory_mib=resources.memory_mib)
        tags = {"cyto:run": run.id, "cyto:date": run.date, "cyto:batch": run.batch,
                "cyto:analysis": job.analysis, "cyto:requested-by": run.requested_by}
        return JobSpec(attempt.job_name, env, resources, tags)

    # -- polling ------------------------------------------------------------------------------
    def poll(self) -> list[Event]:
        """One poll cycle over every unfinished run: submit what waits, describe what runs, record
        transitions, start automatic retries, close finished runs. Returns the events published."""
        events: list[Event] = []
        run_ids = self.db.unfinished_run_ids()
        for run_id in run_ids:
            self.submit_pending(run_id)
        active = self.db.active_attempts(run_ids)
        statuses = self.executor.describe([a.executor_job_id for _, a in active if a.executor_job_id]) \
            if active else {}
        cancelling = {r for r in run_ids if self.get_run(r).state == RunState.CANCELLING}
        now = self.clock()
        transitions = []
        for job, attempt in active:
            status = statuses.get(attempt.executor_job_id or "")
            if status is None:
                if attempt.submitted_at is not None and now - attempt.submitted_at > LOST_AFTER_S:
                    status = JobStatus(attempt.executor_job_id or "", JobState.FAILED,
                                       reason="the executor no longer knows this job (lost)")
                else:
                    continue
            if status.state == JobState.FAILED and status.exit_code not in (None, 0) and \
                    _GENERIC_REASON.match(status.reason or ""):
                status = self._with_log_reason(status)
            t = plan_transition(job, attempt, status, job.run_id in cancelling)
            if t is not None:
                transitions.append(t)
        for t in self.db.apply_transitions(transitions, now):
            events.append(_event_for(t))
        for run_id in run_ids:
            self.submit_pending(run_id)  # automatic retries recorded above
            events.extend(self._finish_if_done(run_id))
        self._publish(events)
        return events

    def _with_log_reason(self, status: JobStatus) -> JobStatus:
        """Replace a bare "exit code N" with the job's own last `ERROR:` line, which says why."""
        try:
            text = self.executor.read_log(status)
        except ExecutorError:
            return status
        message = last_error_line(text or "")
        if message is None:
            return status
        return replace(status, reason=f"{message} (exit code {status.exit_code})")

    def _finish_if_done(self, run_id: str) -> list[Event]:
        run = self.get_run(run_id)
        counts = self.db.counts(run_id)
        if any(counts.get(s, 0) for s in ACTIVE):
            return []
        state = final_run_state(counts, run.state == RunState.CANCELLING)
        if self.db.finish_run(run_id, state, self.clock()):
            return [Event(EventKind.RUN_FINISHED, run_id, state=state.value)]
        return []

    def wait(self, run_id: str, interval: float = 1.0, sleep: Callable[[float], None] = time.sleep,
             timeout: float | None = None) -> RunSummary:
        """Poll until the run has finished (the CLI's --wait; the bot uses the scheduler instead)."""
        deadline = None if timeout is None else self.clock() + timeout
        while not self.get_run(run_id).state.is_finished:
            if deadline is not None and self.clock() > deadline:
                break
            self.poll()
            if not self.get_run(run_id).state.is_finished:
                sleep(interval)
        return self.summary(run_id)

    # -- people's requests --------------------------------------------------------------------
    def retry(self, run_id: str, analysis: str | None = None, *, by: str = "someone",
              memory_mib: int | None = None, submit: bool = True) -> list[str]:
        """Retry one failed (or cancelled) analysis, or every failed one when `analysis` is None.
        Returns the analyses retried; an analysis someone else already retried is left out."""
        run = self.get_run(run_id)
        if run.state == RunState.CANCELLING:
            raise EngineError(f"run {run_id} is being cancelled; wait for it to stop, then retry")
        if analysis is not None:
            job = self.db.job(run_id, analysis)
            if job is None:
                raise NotFound(f"run {run_id} has no analysis {analysis!r}")
            if job.state not in (JobState.FAILED, JobState.CANCELLED) and job.retried_by:
                raise AlreadyRetried(analysis, job.retried_by, job.state, job.attempt)
            if job.state not in (JobState.FAILED, JobState.CANCELLED):
                raise EngineError(f"{analysis} is {job.state.value.lower()}, not failed: nothing to retry")
            jobs = [job]
        else:
            jobs = self.db.jobs(run_id, [JobState.FAILED])
        resources = None
        if memory_mib is not None:
            validate_resources(Resources(**{**run.resources, "memory_mib": memory_mib}))
            resources = {"memory_mib": memory_mib}
        retried = [job.analysis for job in jobs
                   if self.db.retry_job(job, job_name(run_id, job.analysis, job.attempt + 1), by, resources,
                                        self.clock())]
        self._publish([Event(EventKind.JOB_RETRIED, run_id, a, JobState.PENDING, by=by) for a in retried])
        if retried and submit:
            self.submit_pending(run_id)
        return retried

    def cancel(self, run_id: str, *, by: str = "someone") -> bool:
        """Cancel an unfinished run: queued jobs are dropped and running ones stopped. Acts once."""
        self.get_run(run_id)
        if not self.db.request_cancel(run_id, by, self.clock()):
            return False
        for _, attempt in self.db.active_attempts([run_id]):
            if attempt.executor_job_id:
                self.executor.cancel(attempt.executor_job_id, f"cancelled by {by}")
        self._publish([Event(EventKind.RUN_CANCELLING, run_id, by=by)])
        self._publish(self._finish_if_done(run_id))
        return True

    # -- reading ------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        run = self.db.run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}; `cyto runs` lists the recent ones")
        return run

    def summary(self, run_id: str) -> RunSummary:
        run = self.get_run(run_id)
        pairs = self.db.jobs_with_attempts(run_id)
        jobs = [job for job, _ in pairs]
        counts = Counter(job.state for job in jobs)
        durations = {job.analysis: attempt.stopped_at - attempt.started_at for job, attempt in pairs
                     if attempt.started_at and attempt.stopped_at}
        failures = [Failure(j.analysis, j.attempt, j.reason, j.exit_code) for j in jobs if j.state == JobState.FAILED]
        reasons = Counter(f.reason or "unknown" for f in failures)
        end = run.finished_at or self.clock()
        return RunSummary(run, {s: counts.get(s, 0) for s in DISPLAY_ORDER}, len(jobs), end - run.created_at,
                          durations, failures, dict(reasons))

    def log_excerpt(self, run_id: str, analysis: str, attempt: int | None = None, *,
                    tail: int = 15, max_chars: int = 2500) -> LogExcerpt:
        """The lines worth reading from an attempt's log: from the executor's own log when it has
        one, otherwise from the copy the job wrote under Logs/."""
        run = self.get_run(run_id)
        job = self.db.job(run_id, analysis)
        if job is None:
            raise NotFound(f"run {run_id} has no analysis {analysis!r}")
        number = attempt or _last_run_attempt(self.db.attempts(job.id), job.attempt)
        record = self.db.attempt(job.id, number)
        if record is None:
            raise NotFound(f"{analysis} has no attempt {number}")
        ref = BatchRef(run.date, run.batch).analysis(analysis)
        log_key = ref.logs_prefix + attempt_log_name(number)
        text, source = None, None
        if record.executor_job_id:
            status = JobStatus(record.executor_job_id, record.state, record.reason, record.exit_code,
                               record.log_ref, record.started_at, record.stopped_at)
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
        explain = getattr(self.executor, "explain", None)
        explanation = explain(record, run.resources) if callable(explain) else None
        excerpt = select(text, tail=tail, max_chars=max_chars) if text else None
        return LogExcerpt(analysis, number, excerpt, source, self.store.uri_for(log_key), explanation)


def plan_transition(job: Job, attempt: Attempt, status: JobStatus, cancelling: bool) -> Transition | None:
    """What an observed executor status means for an attempt and its job. Pure."""
    new = status.state
    if new == attempt.state and new in (JobState.QUEUED, JobState.RUNNING):
        return None
    common = dict(run_id=job.run_id, analysis=job.analysis, job_id=job.id, attempt=attempt.attempt,
                  old_state=attempt.state, reason=status.reason, exit_code=status.exit_code,
                  log_ref=status.log_ref, started_at=status.started_at, stopped_at=status.stopped_at)
    if new in (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED):
        return Transition(attempt_state=new, job_state=new, **common)
    if new == JobState.CANCELLED or cancelling:
        return Transition(attempt_state=new, job_state=JobState.CANCELLED,
                          **{**common, "reason": status.reason or "cancelled"})
    if attempt.attempt < job.max_attempts:
        return Transition(attempt_state=JobState.FAILED, job_state=JobState.PENDING,
                          next_job_name=job_name(job.run_id, job.analysis, attempt.attempt + 1), **common)
    return Transition(attempt_state=JobState.FAILED, job_state=JobState.FAILED, **common)


def last_error_line(log: str, max_chars: int = 300) -> str | None:
    """The message of the last `ERROR: ...` line the entrypoint wrote, if any."""
    for line in reversed(log.splitlines()[-50:]):
        _, sep, message = line.partition("ERROR: ")
        if sep and message.strip():
            message = message.strip()
            return message if len(message) <= max_chars else message[: max_chars - 1] + "…"
    return None


def _event_for(t: Transition) -> Event:
    if t.retrying:
        return Event(EventKind.JOB_RETRYING, t.run_id, t.analysis, JobState.PENDING.value, t.attempt, t.reason)
    if t.job_state == JobState.FAILED:
        return Event(EventKind.JOB_FAILED, t.run_id, t.analysis, t.job_state.value, t.attempt, t.reason)
    return Event(EventKind.JOB_CHANGED, t.run_id, t.analysis, t.job_state.value, t.attempt, t.reason)


def _last_run_attempt(attempts: Sequence[Attempt], current: int) -> int:
    """The newest attempt that reached the executor (a fresh retry has no log yet)."""
    for record in reversed(attempts):
        if record.executor_job_id or record.state != JobState.PENDING:
            return record.attempt
    return current


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_id() -> str:
    return secrets.token_hex(3)


RESOURCE_LIMITS = {
    "vcpus": (0.25, 256),
    "memory_mib": (128, 1_048_576),
    "storage_gib": (1, 16_384),
    "timeout_s": (60, 14 * 24 * 3600),
    "retries": (0, 9),
}


def validate_resources(resources: Resources) -> Resources:
    for name, (low, high) in RESOURCE_LIMITS.items():
        value = getattr(resources, name)
        if not low <= value <= high:
            raise EngineError(f"{name.replace('_', ' ')} {value} is out of range: {low}..{high}")
    return resources


def with_overrides(resources: Resources, **overrides: Any) -> Resources:
    return replace(resources, **{k: v for k, v in overrides.items() if v is not None})


__all__ = ["AlreadyRetried", "Engine", "EngineError", "Event", "EventKind", "LayoutError", "NotFound", "Plan",
           "RunSummary"]
