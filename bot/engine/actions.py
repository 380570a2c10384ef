"""What people ask of a run: start it, release or abandon a held one, retry, cancel."""

from __future__ import annotations

from bot.engine.errors import AlreadyRetried, EngineError, NotFound
from bot.engine.model import Plan
from bot.engine.planning import new_run_id, validate_resources
from bot.engine.polling import Polling
from bot.executors import Resources, job_name
from bot.ledger import BatchBusy, Run
from bot.states import JobState, RunState


class Actions(Polling):
    """What people ask of a run; each acts once however often it is asked."""

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
        if submit and not hold:
            self.submit_pending(run.id)
        return self.get_run(run.id)

    def release(self, run_id: str, slack_channel: str, slack_thread_ts: str) -> bool:
        """End a run's hold (its Slack thread exists); the next poll, or `submit_pending`, submits it."""
        return self.db.release_run(run_id, slack_channel, slack_thread_ts, self.clock())

    def abandon(self, run_id: str, reason: str) -> bool:
        """Give up a held run with nothing submitted."""
        return self.db.abandon_run(run_id, reason, self.clock())

    def retry(self, run_id: str, analysis: str | None = None, *, by: str = "someone",
              memory_mib: int | None = None, vcpus: float | None = None, timeout_s: int | None = None,
              submit: bool = True, expected_attempt: int | None = None) -> list[str]:
        """Retry one failed (or cancelled) analysis, or every failed one when `analysis` is None;
        `memory_mib`, `vcpus` and `timeout_s` override the run's resources for the new attempts.
        Returns the analyses retried; an analysis someone else already retried is left out. A run
        being cancelled is never reopened; a retry after a cancel has finished is a new action.
        `expected_attempt` (one analysis only): the attempt the person saw fail; AlreadyRetried when
        the analysis has moved on since, however close the race."""
        if expected_attempt is not None and analysis is None:
            raise EngineError("expected_attempt is for retrying one analysis")
        run = self.get_run(run_id)
        if run.state == RunState.CANCELLING:
            raise EngineError(f"run {run_id} is being cancelled; wait for it to stop, then retry")
        self._refuse_shared_output(run)
        if analysis is not None:
            job = self.db.job(run_id, analysis)
            if job is None:
                raise NotFound(f"run {run_id} has no analysis {analysis!r}")
            if (job.state not in (JobState.FAILED, JobState.CANCELLED) and job.retried_by) or (
                    expected_attempt is not None and job.attempt != expected_attempt):
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
                                        self.clock(), run.cancel_epoch, expected_attempt)]
        if jobs and not retried and self.get_run(run_id).cancel_epoch != run.cancel_epoch:
            raise EngineError(f"run {run_id} was cancelled while the retry was being made; nothing was retried")
        if expected_attempt is not None and not retried and analysis is not None:
            moved = self.db.job(run_id, analysis)
            if moved is not None and moved.attempt != expected_attempt:
                raise AlreadyRetried(analysis, moved.retried_by, moved.state, moved.attempt)
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
        self._finish_if_done(run_id)
        return True
