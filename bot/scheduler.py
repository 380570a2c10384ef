"""APScheduler drives the engine's poll step (and any other periodic step, such as the Slack bot's
delivery) as separate jobs, each on its own worker thread, so one slow step never delays another.
It holds no state: every poll reads the run database, so starting the scheduler after a restart
resumes every unfinished run."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from bot.ledger import DatabaseError

log = logging.getLogger(__name__)
POLL = "poll"


class _QuietScheduler(logging.Filter):
    """APScheduler logs every execution ("Running job …", "… executed successfully") and every
    tick it skips because the job is still running; for a poll every few seconds that is most of
    the log. A step that is slow shows in /healthz (last poll) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or (
            record.levelno >= logging.WARNING and "maximum number of running instances" not in record.getMessage())


for _name in ("apscheduler.scheduler", "apscheduler.executors.default"):
    logging.getLogger(_name).addFilter(_QuietScheduler())


class PollScheduler:
    def __init__(self, poll: Callable[[], object], seconds: float) -> None:
        self.seconds = seconds
        self._jobs: dict[str, tuple[Callable[[], object], float]] = {POLL: (poll, seconds)}
        # One worker thread per job: the poll never waits behind another step.
        self._scheduler = BackgroundScheduler(daemon=True, executors={
            "default": {"type": "threadpool", "max_workers": 4}})

    def add(self, name: str, step: Callable[[], object], seconds: float) -> None:
        """Another periodic step, independent of the poll (call before `start`)."""
        self._jobs[name] = (step, seconds)

    @staticmethod
    def _guarded(name: str, step: Callable[[], object]) -> Callable[[], None]:
        last_database_error: list[str | None] = [None]

        def tick() -> None:
            try:
                step()
            except DatabaseError as exc:
                # Said once, not at every tick: a ledger deleted or replaced under the process stays so.
                if str(exc) != last_database_error[0]:
                    log.error("%s failed: %s", name, exc)
                last_database_error[0] = str(exc)
            except Exception:  # a failed step must not stop the next one
                log.exception("%s failed; retrying at the next tick", name)
            else:
                last_database_error[0] = None

        return tick

    def start(self) -> None:
        now = dt.datetime.now(dt.UTC)
        for name, (step, seconds) in self._jobs.items():
            self._scheduler.add_job(self._guarded(name, step), "interval", seconds=seconds, id=name, max_instances=1,
                                    coalesce=True, next_run_time=now)
        self._scheduler.start()

    def run_now(self, name: str) -> None:
        """Ask for a step as soon as possible; a no-op while it runs (it is asked again later)."""
        try:
            self._scheduler.modify_job(name, next_run_time=dt.datetime.now(dt.UTC))
        except Exception:  # stopped, or not started yet
            log.debug("could not wake %s", name)

    def poll_now(self) -> None:
        """Ask for a poll as soon as possible (after a new run or a retry)."""
        self.run_now(POLL)

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)
