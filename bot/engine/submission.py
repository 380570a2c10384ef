"""Submitting a run's recorded attempts: claim, submit, record; every claim resolved in the same pass."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from bot import claims
from bot.engine.core import EngineCore
from bot.engine.files import run_layout
from bot.executors import ExecutorError, JobSpec, Resources
from bot.layout import LayoutError
from bot.ledger import Attempt, DatabaseError, Job, Run
from bot.states import RunState
from bot.store import StoreError
from container.contract import JobEnvironment

SUBMIT_CHUNK = 100
_SKIPPED = "skipped: the run was cancelled"
# Recording a submission is retried this many times (a locked database) before the claim is left for
# the next pass, which looks the jobs up by name instead of submitting them again.
RECORD_TRIES = 3
log = logging.getLogger("cyto.engine")


class Submission(EngineCore):
    """Hands a run's recorded attempts to the executor, and stops what a cancel overtook."""

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
            workers = max(1, self.executor.submit_concurrency)
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
        if submitted:
            self.executor.flush()
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
            self.db.record_submit_failed(run_id, job.id, job.attempt, token, reason, self.clock(), rule)
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
