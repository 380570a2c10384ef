"""The run engine: plan a run, record it, submit, poll, retry, cancel, summarise.

The run database is the truth; the engine holds no run state of its own, so a restarted process
resumes every unfinished run by polling. Front ends (CLI, Slack, notebook) call the engine and
subscribe to its events; none of them contains run logic.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bot import catalog, claims, failure_policy
from bot.batch_files import check_batch_files
from bot.db import Attempt, BatchBusy, DatabaseError, Job, Run, RunDB, Transition
from bot.excerpt import Excerpt, select
from bot.executors import Executor, ExecutorError, JobSpec, JobStatus, Resources, job_name
from bot.layout import BatchRef, LayoutError
from bot.parameters import check_parameters
from bot.states import ACTIVE, DISPLAY_ORDER, JobState, RunState, final_run_state
from bot.store import ObjectNotFound, Store, StoreError
from container.contract import JobEnvironment
from container.pipelines import ParameterError
from container.pipelines import available as available_pipelines

SUBMIT_CHUNK = 100
# A reason that says no more than the exit code; the job's own ERROR line says more.
_GENERIC_REASON = re.compile(r"^(exit code -?\d+)?$")
# A job the executor has never heard of this long after submission is reported lost.
LOST_AFTER_S = 300.0
_SKIPPED = "skipped: the run was cancelled"
# Recording a submission is retried this many times (a locked database) before the claim is left for
# the next pass, which looks the jobs up by name instead of submitting them again.
RECORD_TRIES = 3
log = logging.getLogger("cyto.engine")


class EngineError(RuntimeError):
    """A request the engine refuses; the message says why and what to do instead."""


class NotFound(EngineError):
    pass


class BadParameters(EngineError):
    """The pipeline's own parameter check refused the run's parameters or an analysis's params.json."""


CONCURRENT_HINT = "cancel it or pass --allow-concurrent to run both, each writing its own Output folder"
STOPPING_HINT = "wait for it to stop or pass --allow-concurrent to run both, each writing its own Output folder"


class BatchInUse(EngineError):
    """Another run of the batch is unfinished; a second one needs `allow_concurrent`."""

    def __init__(self, active: Run, done: int, total: int, hint: str = CONCURRENT_HINT) -> None:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(active.created_at))
        super().__init__(
            f"run {active.id} of {active.label} is still {active.state.value.lower()} (started by "
            f"{active.requested_by} at {started}, {done}/{total} done); {hint}")
        self.active, self.done, self.total, self.started = active, done, total, started


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
    rule: str | None = None  # the failure policy's rule that applied (bot/failure_policy.py)


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
                 clock: Callable[[], float] = time.time, default_retries: int = 2,
                 max_memory_mib: int = failure_policy.DEFAULT_MAX_MEMORY_MIB) -> None:
        self.store = store
        self.executor = executor
        self.db = db
        self.clock = clock
        self.default_retries = default_retries
        self.max_memory_mib = max_memory_mib
        self._listeners: list[Listener] = []
        # Claims on attempts being submitted are `host:pid:nonce:pass`; a claim is live only while the
        # submission pass that took it runs (see _stale_tokens).
        self._token_prefix = claims.new_token()
        self._live_tokens: set[str] = set()
        self._tokens_lock = threading.Lock()
        # Runs this process has cancelled: its own submission passes stop submitting them at once.
        self._cancelled_here: set[str] = set()

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
        try:
            check_batch_files(self.store, ref, check_parameters(self.store, ref, analyses, pipeline, params or {}))
        except ParameterError as exc:
            raise BadParameters(str(exc)) from None
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
                  slack_thread_ts: str | None = None, submit: bool = True, allow_concurrent: bool = False,
                  hold: bool = False) -> Run:
        """Record the run and the intent to submit each analysis, then submit them.

        Refused (BatchInUse, nothing recorded) while another run of the batch is unfinished, unless
        `allow_concurrent`: then this run writes to its own Output/{date}/{batch}.run-{run}/ folder.
        A held run (`hold=True`) is submitted by nobody, not even a poll, until `release` (or `abandon`)."""
        now = self.clock()
        for _ in range(10):
            run = Run(id=new_run_id(), date=plan.ref.date, batch=plan.ref.batch, pipeline=plan.pipeline,
                      params=dict(plan.params), resources=plan.resources.as_dict(), executor=self.executor.name,
                      store=self.store.uri, requested_by=requested_by,
                      state=RunState.HELD if hold else RunState.ACTIVE, created_at=now,
                      finished_at=None, cancel_requested_by=None, slack_channel=slack_channel,
                      slack_thread_ts=slack_thread_ts, version=0)
            names = [job_name(run.id, a, 1) for a in plan.analyses]
            try:
                created = self.db.create_run(run, plan.analyses, plan.resources.retries + 1, names, now,
                                             allow_concurrent=allow_concurrent)
            except BatchBusy as busy:
                raise self._in_use(busy.active) from None
            if created:
                break
        else:  # pragma: no cover - 10 collisions of 24 random bits
            raise EngineError("could not allocate a run id")
        self._publish([Event(EventKind.RUN_STARTED, run.id, by=requested_by)])
        if submit and not hold:
            self.submit_pending(run.id)
        return self.get_run(run.id)

    def _in_use(self, active: Run, hint: str | None = None) -> BatchInUse:
        if hint is None:
            hint = STOPPING_HINT if active.state == RunState.CANCELLING else CONCURRENT_HINT
        counts = self.db.counts(active.id)
        done = sum(counts.get(s, 0) for s in JobState if s not in ACTIVE)
        return BatchInUse(active, done, sum(counts.values()), hint)

    def _refuse_shared_output(self, run: Run) -> None:
        """A retry must not write an Output folder that another unfinished run is writing (a finished
        run retried after a newer run of its batch started)."""
        mine = run_layout(run).output_prefix
        for other in self.db.active_runs(run.date, run.batch):
            if other.id != run.id and run_layout(other).output_prefix == mine:
                raise self._in_use(other, f"it writes the same Output folder as run {run.id}: retry after "
                                          "it has finished, or cancel it")

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

        An attempt is claimed (compare-and-set) before it is submitted, and every claim is resolved in
        the same pass: recorded as submitted, failed with the reason, or, when even recording fails,
        left to the next pass, which looks the job up by its deterministic name before submitting.
        An attempt cancelled while it was being submitted has its executor job stopped at once."""
        run = self.get_run(run_id)
        self._resolve_cancelled_claims(run_id)
        if run.state != RunState.ACTIVE:
            return 0
        token = self._open_claim()
        submitted = 0
        try:
            workers = max(1, int(getattr(self.executor, "submit_concurrency", 1)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                mapper = pool.map if workers > 1 else map
                stale = self._stale_tokens(run_id)
                while True:
                    claimed = self.db.claim_pending(run_id, token, self.clock(), stale, SUBMIT_CHUNK)
                    if not claimed:
                        break
                    stale = []
                    results = list(mapper(lambda pair: self._submit_one(run, *pair), claimed))
                    recorded = self._record_chunk(run_id, token, claimed, results)
                    if recorded is None:
                        break  # the ledger cannot be written now: the next pass looks these up by name
                    submitted += recorded
        finally:
            self._close_claim(token)
        flush = getattr(self.executor, "flush", None)
        if submitted and callable(flush):
            flush()
        return submitted

    def _submit_one(self, run: Run, job: Job, before: Attempt) -> tuple[str | None, str | None]:
        """(executor job id, None), or (None, why it cannot be submitted). Never raises: one bad
        analysis must not stop its chunk-mates."""
        if run.id in self._cancelled_here:
            return None, _SKIPPED
        try:
            if before.claim_token is not None:
                found = self.executor.find(before.job_name)
                if found:
                    return found, None
            return self.executor.submit(self.job_spec(run, job, before)), None
        except ExecutorError as exc:
            return None, f"could not submit: {exc}"
        except (StoreError, LayoutError) as exc:
            return None, str(exc)
        except Exception as exc:  # a bug must fail this attempt with its reason, not strand the claim
            log.exception("submitting %s of run %s failed", job.analysis, run.id)
            return None, f"could not submit: {type(exc).__name__}: {exc}"

    def _record_chunk(self, run_id: str, token: str, claimed: Sequence[tuple[Job, Attempt]],
                      results: Sequence[tuple[str | None, str | None]]) -> int | None:
        """Record a submitted chunk; returns how many were recorded, or None when the ledger refused."""
        ok = [(job.id, job.attempt, job_id) for (job, _), (job_id, _) in zip(claimed, results, strict=True) if job_id]
        for tries_left in range(RECORD_TRIES - 1, -1, -1):
            try:
                recorded, lost = self.db.record_submitted(run_id, ok, token, self.clock())
                break
            except DatabaseError as exc:
                if not tries_left:
                    log.error("run %s: could not record %d submitted job(s) (%s); the next poll finds them "
                              "by name", run_id, len(ok), exc)
                    return None
                time.sleep(0.2)
        self._stop_lost(run_id, lost)
        for (job, _), (job_id, error) in zip(claimed, results, strict=True):
            if error is _SKIPPED:
                self.db.clear_claim(job.id, job.attempt, token)  # cancelled before it was submitted
            if job_id or error is _SKIPPED:
                continue
            reason = error or "could not submit"
            rule = "not retried automatically: the analysis cannot be submitted as it is"
            if self.db.record_submit_failed(run_id, job.id, job.attempt, token, reason, self.clock(), rule):
                self._publish([Event(EventKind.JOB_FAILED, run_id, job.analysis, JobState.FAILED, job.attempt,
                                     reason)])
        return recorded

    def _stop_lost(self, run_id: str, lost: Sequence[tuple[int, int, str]]) -> None:
        """Executor jobs whose attempt was cancelled (or taken over) while they were being submitted are
        not the ledger's: record the intent to stop each, stop it, record that it was."""
        for job_id, number, executor_job_id in lost:
            current = self.db.attempt(job_id, number)
            if current is None or current.executor_job_id == executor_job_id:
                continue  # the ledger holds this very job (another pass recorded it)
            if not self.db.record_orphan(job_id, number, executor_job_id):
                log.warning("run %s: executor job %s duplicates one the ledger holds; stopping it",
                            run_id, executor_job_id)
            self._send_cancel(executor_job_id, "cancelled before it started: the run was cancelled")
            self.db.mark_cancel_sent([(job_id, number)], self.clock())

    def _resolve_cancelled_claims(self, run_id: str) -> None:
        """Claims on attempts cancelled while being submitted, whose claimer is gone: its job may exist
        at the executor. Look it up by name and stop it, or clear the claim."""
        unresolved = self.db.unresolved_claims(run_id)
        if not unresolved:
            return
        stale = set(self._stale_tokens(run_id))
        for job, attempt in unresolved:
            if attempt.claim_token not in stale:
                continue  # its claimer is still at work and resolves it itself
            try:
                found = self.executor.find(attempt.job_name)
            except ExecutorError as exc:
                log.warning("run %s: cannot look up %s (%s); trying again next poll", run_id, attempt.job_name, exc)
                continue
            if found:
                self._stop_lost(run_id, [(job.id, attempt.attempt, found)])
            else:
                self.db.clear_claim(job.id, attempt.attempt, attempt.claim_token or "")

    def _send_cancel(self, executor_job_id: str, reason: str) -> bool:
        try:
            self.executor.cancel(executor_job_id, reason)
        except ExecutorError as exc:
            log.warning("could not stop executor job %s (%s); trying again next poll", executor_job_id, exc)
            return False
        return True

    def _open_claim(self) -> str:
        with self._tokens_lock:
            token = f"{self._token_prefix}:{secrets.token_hex(3)}"
            self._live_tokens.add(token)
        return token

    def _close_claim(self, token: str) -> None:
        with self._tokens_lock:
            self._live_tokens.discard(token)

    def _stale_tokens(self, run_id: str) -> list[str]:
        """Claims whose pass is over: held by a process that no longer exists (a dead pid on this host,
        or another host: a replaced container), or by a pass of this process that ended without
        recording them. A live process on this host is still submitting its own."""
        with self._tokens_lock:
            live = set(self._live_tokens)
        stale = []
        for token in self.db.claim_tokens(run_id):
            if token in live:
                continue
            if token.startswith(self._token_prefix + ":"):
                stale.append(token)
                continue
            host, pid = claims.holder(token)
            if host != socket.gethostname() or pid is None or not claims.pid_alive(pid):
                stale.append(token)
        return stale

    def job_spec(self, run: Run, job: Job, attempt: Attempt) -> JobSpec:
        ref = run_layout(run).analysis(job.analysis)
        resources = Resources(**{**run.resources, **(attempt.resources or {})})
        env = JobEnvironment(
            run_id=run.id, attempt=attempt.attempt, date=run.date, batch=run.batch, analysis=job.analysis,
            pipeline=run.pipeline, input_uri=self.store.uri_for(ref.input_prefix),
            output_uri=self.store.uri_for(ref.output_prefix),
            logs_uri=self.store.uri_for(ref.run_logs_prefix(run.id)),
            params=run.params, vcpus=resources.vcpus, memory_mib=resources.memory_mib)
        tags = {"cyto:run": run.id, "cyto:date": run.date, "cyto:batch": run.batch,
                "cyto:analysis": job.analysis, "cyto:requested-by": run.requested_by}
        return JobSpec(attempt.job_name, env, resources, tags)

    # -- polling ------------------------------------------------------------------------------
    def poll(self) -> list[Event]:
        """One poll cycle over every unfinished run: submit what waits, stop what a cancel left running,
        describe what runs, record transitions, start automatic retries, check the ledger's invariant,
        close finished runs. Returns the events published."""
        events: list[Event] = []
        run_ids = self.db.unfinished_run_ids()
        for run_id in run_ids:
            self.submit_pending(run_id)
        self._send_pending_cancels(run_ids)
        active = self.db.active_attempts(run_ids)
        statuses = self.executor.describe([a.executor_job_id for _, a in active if a.executor_job_id]) \
            if active else {}
        runs = {r: self.get_run(r) for r in {job.run_id for job, _ in active}}
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
            run = runs[job.run_id]
            memory = int((attempt.resources or {}).get("memory_mib") or run.resources.get("memory_mib")
                         or Resources().memory_mib)
            t = plan_transition(job, attempt, status, run.state == RunState.CANCELLING, self.max_memory_mib, memory)
            if t is not None:
                transitions.append(t)
        for t in self.db.apply_transitions(transitions, now):
            events.append(_event_for(t))
        for run_id, analysis, old, new in self.db.repair_job_states(run_ids, now):
            log.warning("run %s: %s was %s while its attempt was not; repaired to %s", run_id, analysis, old, new)
        for run_id in run_ids:
            self.submit_pending(run_id)  # automatic retries recorded above
            events.extend(self._finish_if_done(run_id))
        self._publish(events)
        return events

    def _send_pending_cancels(self, run_ids: Sequence[str]) -> None:
        """A cancel is recorded (the run CANCELLING) before the executor is told; whatever was not told
        yet (a crash in between, an executor error) is told now."""
        to_send = self.db.cancels_to_send(run_ids)
        by = {run_id: self.get_run(run_id).cancel_requested_by or "someone"
              for run_id in {job.run_id for job, _ in to_send}}  # one read per run, not per job
        sent = [(job.id, attempt.attempt) for job, attempt in to_send
                if self._send_cancel(attempt.executor_job_id or "", f"cancelled by {by[job.run_id]}")]
        if sent:
            self.db.mark_cancel_sent(sent, self.clock())

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
            self._cancelled_here.discard(run_id)
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
              memory_mib: int | None = None, vcpus: float | None = None, timeout_s: int | None = None,
              submit: bool = True) -> list[str]:
        """Retry one failed (or cancelled) analysis, or every failed one when `analysis` is None;
        `memory_mib`, `vcpus` and `timeout_s` override the run's resources for the new attempts.
        Returns the analyses retried; an analysis someone else already retried is left out. A run
        being cancelled is never reopened; a retry after a cancel has finished is a new action."""
        run = self.get_run(run_id)
        if run.state == RunState.CANCELLING:
            raise EngineError(f"run {run_id} is being cancelled; wait for it to stop, then retry")
        self._refuse_shared_output(run)
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
        overrides = {k: v for k, v in (("memory_mib", memory_mib), ("vcpus", vcpus), ("timeout_s", timeout_s))
                     if v is not None}
        resources = None
        if overrides:
            validate_resources(Resources(**{**run.resources, **overrides}))
            resources = overrides
        retried = [job.analysis for job in jobs
                   if self.db.retry_job(job, job_name(run_id, job.analysis, job.attempt + 1), by, resources,
                                        self.clock(), run.cancel_epoch)]
        if jobs and not retried and self.get_run(run_id).cancel_epoch != run.cancel_epoch:
            raise EngineError(f"run {run_id} was cancelled while the retry was being made; nothing was retried")
        self._publish([Event(EventKind.JOB_RETRIED, run_id, a, JobState.PENDING, by=by) for a in retried])
        if retried and submit:
            self.submit_pending(run_id)
        return retried

    def cancel(self, run_id: str, *, by: str = "someone") -> bool:
        """Cancel an unfinished run: queued jobs are dropped and running ones stopped. Acts once.

        The cancel is recorded first (the run CANCELLING, attempts not yet submitted CANCELLED);
        then the executor is told to stop each job it holds, and each stop is recorded as sent.
        Attempts being submitted at this moment are stopped by their submitter when it records.
        A held run (nothing submitted yet) is abandoned."""
        if self.get_run(run_id).state == RunState.HELD:
            return self.abandon(run_id, f"cancelled by {by} before anything was submitted")
        if not self.db.request_cancel(run_id, by, self.clock()):
            return False
        self._cancelled_here.add(run_id)
        self._send_pending_cancels([run_id])
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
        number = attempt or _last_run_attempt(self.db.attempts(job.id), job.attempt)
        record = self.db.attempt(job.id, number)
        if record is None:
            raise NotFound(f"{analysis} has no attempt {number}")
        log_key = run_layout(run).analysis(analysis).attempt_log_key(run.id, number)
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


def run_layout(run: Run) -> BatchRef:
    """Where a run's files live: its batch, with its own Output folder when it ran alongside another."""
    return BatchRef(run.date, run.batch, run.id if run.outputs_scoped else None)


def plan_transition(job: Job, attempt: Attempt, status: JobStatus, cancelling: bool,
                    max_memory_mib: int = failure_policy.DEFAULT_MAX_MEMORY_MIB,
                    memory_mib: int | None = None) -> Transition | None:
    """What an observed executor status means for an attempt and its job. Pure.
    A failure is retried or not as bot/failure_policy.py decides; the rule is recorded with it."""
    new = status.state
    if new == attempt.state and new in (JobState.QUEUED, JobState.RUNNING):
        return None
    common: dict[str, Any] = dict(run_id=job.run_id, analysis=job.analysis, job_id=job.id, attempt=attempt.attempt,
                  old_state=attempt.state, reason=status.reason, exit_code=status.exit_code,
                  log_ref=status.log_ref, started_at=status.started_at, stopped_at=status.stopped_at)
    if new in (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED):
        return Transition(attempt_state=new, job_state=new, **common)
    if new == JobState.CANCELLED or cancelling:
        return Transition(attempt_state=new, job_state=JobState.CANCELLED,
                          **{**common, "reason": status.reason or "cancelled"})
    memory = memory_mib or int((attempt.resources or {}).get("memory_mib") or Resources().memory_mib)
    decision = failure_policy.decide(attempt=attempt.attempt, max_attempts=job.max_attempts,
                                     exit_code=status.exit_code, reason=status.reason, memory_mib=memory,
                                     memory_retried=bool(job.memory_retried), max_memory_mib=max_memory_mib)
    if decision.retry:
        return Transition(attempt_state=JobState.FAILED, job_state=JobState.PENDING,
                          next_job_name=job_name(job.run_id, job.analysis, attempt.attempt + 1),
                          next_resources={"memory_mib": decision.memory_mib} if decision.memory_mib else None,
                          failure_rule=decision.rule, **common)
    return Transition(attempt_state=JobState.FAILED, job_state=JobState.FAILED, failure_rule=decision.rule,
                      **common)


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


__all__ = ["AlreadyRetried", "BatchInUse", "Engine", "EngineError", "Event", "EventKind", "LayoutError", "NotFound",
           "Plan", "RunSummary"]
