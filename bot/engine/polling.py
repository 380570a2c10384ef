"""One poll cycle: describe what runs, record what changed, start automatic retries, close finished runs.
Each change is recorded with its durable event (`run_events`); followers read those (`Cyto.follow`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace

from bot.engine.logs import GENERIC_REASON, last_error_line
from bot.engine.reading import Reading
from bot.engine.submission import Submission
from bot.engine.transitions import plan_transition
from bot.executors import ExecutorError, JobStatus, Resources
from bot.ledger import DatabaseError
from bot.states import ACTIVE, JobState, RunState, final_run_state

# A job the executor has never heard of this long after submission is reported lost.
LOST_AFTER_S = 300.0
# How long a poller's lease on a run lasts when it dies mid-cycle on another host (on its own host the
# lease is free at once): longer than any cycle, so a slow poller keeps its runs.
POLL_LEASE_S = 120.0
log = logging.getLogger("cyto.engine")


class Polling(Submission, Reading):
    """Records what the executor reports; submits automatic retries; closes finished runs."""

    def poll(self) -> None:
        """One poll cycle over every unfinished run that no other poller is working on (poll leases,
        bot/ledger/leases.py): submit what waits, stop what a cancel left running,
        describe what runs, record transitions, start automatic retries, check the ledger's invariant,
        close finished runs."""
        holder = f"{self._token_prefix}:poll"  # this engine's: a lease it failed to release is still its own
        run_ids = self.db.lease_runs(self.db.unfinished_run_ids(), holder, self.clock(), POLL_LEASE_S)
        try:
            self._poll_runs(run_ids)
        finally:
            with contextlib.suppress(DatabaseError):  # the cycle's own error is the one to report
                self.db.release_runs(run_ids, holder)

    def _poll_runs(self, run_ids: list[str]) -> None:
        """One poll cycle over the runs this poller leased (another poller works on the others)."""
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
                    GENERIC_REASON.match(status.reason or ""):
                status = self._with_log_reason(status)
            run = runs[job.run_id]
            memory = int((attempt.resources or {}).get("memory_mib") or run.resources.get("memory_mib")
                         or Resources().memory_mib)
            t = plan_transition(job, attempt, status, run.state == RunState.CANCELLING, self.max_memory_mib, memory)
            if t is not None:
                transitions.append(t)
        self.db.apply_transitions(transitions, now)
        for run_id, analysis, old, new in self.db.repair_job_states(run_ids, now):
            log.warning("run %s: %s was %s while its attempt was not; repaired to %s", run_id, analysis, old, new)
        for run_id in run_ids:
            self.submit_pending(run_id)  # automatic retries recorded above
            self._finish_if_done(run_id)

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

    def _finish_if_done(self, run_id: str) -> bool:
        run = self.get_run(run_id)
        counts = self.db.counts(run_id)
        if any(counts.get(s, 0) for s in ACTIVE):
            return False
        state = final_run_state(counts, run.state == RunState.CANCELLING)
        if self.db.finish_run(run_id, state, self.clock()):
            self._cancelled_here.discard(run_id)
            return True
        return False
