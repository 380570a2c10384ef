"""What the engine refuses, and why: the exceptions front ends turn into messages."""

from __future__ import annotations

import time

from bot.ledger import Run
from bot.states import JobState


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
