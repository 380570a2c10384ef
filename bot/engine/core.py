"""The engine's state and the few things every part of it uses: runs read, executor told to stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bot import claims, defaults
from bot.engine.errors import CONCURRENT_HINT, STOPPING_HINT, BatchInUse, EngineError, NotFound
from bot.engine.files import run_layout
from bot.executors import Executor, ExecutorError, Resources
from bot.ledger import Run, RunDB
from bot.states import ACTIVE, JobState, RunState
from bot.store import Store

log = logging.getLogger("cyto.engine")


class EngineCore:
    """The engine's ports (store, executor, ledger) and this process's claims. What happened to a run is
    read from the ledger's durable events (`RunDB.events`), written with each change."""

    def __init__(self, store: Store, executor: Executor, db: RunDB, *,
                 clock: Callable[[], float] = time.time, default_retries: int = defaults.RETRIES,
                 max_memory_mib: int = defaults.MAX_MEMORY_MIB) -> None:
        self.store = store
        self.executor = executor
        self.db = db
        self.clock = clock
        self.default_retries = default_retries
        self.max_memory_mib = max_memory_mib
        # Claims on attempts being submitted are `host:pid:nonce:pass`; a claim is live only while the
        # submission pass that took it runs (see _stale_tokens).
        self._token_prefix = claims.new_token()
        self._live_tokens: set[str] = set()
        self._tokens_lock = threading.Lock()
        # Runs this process has cancelled: its own submission passes stop submitting them at once.
        self._cancelled_here: set[str] = set()

    def default_resources(self) -> Resources:
        """What a run gets when its request names no resources (and no retries)."""
        return Resources(retries=self.default_retries)

    def check_executor(self) -> None:
        """Refuse a run up front when the executor is misconfigured (e.g. a missing job queue)."""
        try:
            self.executor.check()
        except ExecutorError as exc:
            raise EngineError(str(exc)) from exc

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

    def _send_cancel(self, executor_job_id: str, reason: str) -> bool:
        try:
            self.executor.cancel(executor_job_id, reason)
        except ExecutorError as exc:
            log.warning("could not stop executor job %s (%s); trying again next poll", executor_job_id, exc)
            return False
        return True

    def get_run(self, run_id: str) -> Run:
        run = self.db.run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}; `cyto runs` lists the recent ones")
        return run
