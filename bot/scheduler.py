"""APScheduler drives the engine's poll step. It holds no state: every poll reads the run database,
so starting the scheduler after a restart resumes every unfinished run."""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from bot.db import DatabaseError

log = logging.getLogger(__name__)


class PollScheduler:
    def __init__(self, poll: Callable[[], object], seconds: float) -> None:
        self._poll = poll
        self.seconds = seconds
        self._scheduler = BackgroundScheduler(daemon=True)
        self._last_database_error: str | None = None

    def _tick(self) -> None:
        try:
            self._poll()
        except DatabaseError as exc:
            # Said once, not at every tick: a ledger deleted or replaced under the process stays so.
            if str(exc) != self._last_database_error:
                log.error("poll failed: %s", exc)
            self._last_database_error = str(exc)
        except Exception:  # a failed poll must not stop the next one
            log.exception("poll failed; retrying at the next tick")
        else:
            self._last_database_error = None

    def start(self) -> None:
        import datetime as dt

        self._scheduler.add_job(self._tick, "interval", seconds=self.seconds, id="poll", max_instances=1,
                                coalesce=True, next_run_time=dt.datetime.now(dt.UTC))
        self._scheduler.start()

    def poll_now(self) -> None:
        """Ask for a poll as soon as possible (after a new run or a retry)."""
        import datetime as dt

        self._scheduler.modify_job("poll", next_run_time=dt.datetime.now(dt.UTC))

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)
