"""The events the engine publishes to its subscribers (progress bars, Slack threads, widgets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.states import EventKind


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
