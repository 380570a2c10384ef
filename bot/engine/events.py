"""The events the engine publishes to its subscribers (progress bars, Slack threads, widgets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


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
