"""Plan what Slack should show from the run database: the reporter writes intents, never calls Slack.

The database is the truth; `slack_state` records what has been planned, and the outbox
(handlers/outbox.py) holds each message until handlers/sender.py has delivered it. `plan()` is
idempotent, so any number of bots may run it on one database and a restarted bot carries on in the
same threads. Per run: each failure found for good is recorded in exactly one reply (grouped),
failure replies whose analysis was retried get an edit, the root message gets an edit whenever the
run's version changed (coalesced: one pending edit per run), and the done alert is planned once per
finish, after the failure replies have been delivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.engine import Engine, EngineError
from bot.ledger import Run
from bot.store import StoreError
from handlers import render, results
from handlers.outbox import Kind, Outbox
from handlers.render import FailureEntry
from handlers.slack_state import SlackState

log = logging.getLogger(__name__)


class Reporter:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.state = SlackState(engine.db)
        self.outbox = Outbox(engine.db)
        self.clock = clock

    def plan(self) -> int:
        """Record intents for every run whose thread is behind the database; returns the runs planned."""
        with_root = 0
        for run_id in self.state.orphan_holds():
            run = self.engine.get_run(run_id)
            self.state.hold(run_id, run.slack_channel or "", run.requested_by, None, self.clock())
            with_root += 1
        done = 0
        for run_id in self.state.runs_to_sync():
            if self.plan_run(run_id):
                done += 1
        return done + with_root

    def plan_run(self, run_id: str) -> bool:
        run = self.engine.get_run(run_id)
        if not run.slack_channel or not run.slack_thread_ts:
            return False
        # Planned up to the version read before any step: a change during the steps shows as a
        # newer version and brings the run back at the next plan.
        start_version = run.version
        self._plan_failures(run)
        self.plan_retried(run)
        self.outbox.want_edit(f"edit:root:{run.id}", run.id, Kind.EDIT_ROOT, run.slack_channel, run.slack_thread_ts,
                              start_version, self.clock())
        if run.state.is_finished and run.finished_at is not None:
            # Rendered now, as this finish was; the outbox sends it after the run's failure replies.
            summary = self.engine.summary(run.id)
            if summary.run.finished_at != run.finished_at:
                return False  # reopened meanwhile: planned again at the next version
            output = self.engine.output_uri(run)
            done = results.prepare(self.engine, summary, output)  # the report, QC verdicts and its link
            with self.engine.db.transaction() as conn:
                self.outbox.add(conn, f"done:{run.id}:{run.finished_at!r}", run.id, Kind.DONE, run.slack_channel,
                                self.clock(), thread_ts=run.slack_thread_ts, payload=done.message.payload())
        self.state.set_synced(run_id, start_version)
        return True

    def plan_retried(self, run: Run) -> None:
        """Edits for failure replies whose analysis has since been retried (by a button, `/cyto
        retry`, the CLI or a notebook)."""
        if not run.slack_channel:
            return
        self.state.note_retries(run.id)
        for message_key, message_ts in self.state.messages_to_edit(run.id):
            self.outbox.want_edit(f"edit:{message_key}", run.id, Kind.EDIT_FAILURES, run.slack_channel, message_ts,
                                  run.version, self.clock())

    # -- failure replies ----------------------------------------------------------------------
    def _plan_failures(self, run: Run) -> None:
        failed = self.state.unposted_failures(run.id)
        if not failed:
            return
        entries = [FailureEntry(analysis, attempt, reason, exit_code, full_log="")
                   for analysis, attempt, reason, exit_code in failed]
        complete = [self._complete(run, e) for group in render.plan_failure_messages(entries) for e in group]
        self.state.plan_failure_replies(run.id, run.slack_channel or "", run.slack_thread_ts or "", complete,
                                        self.clock())

    def _complete(self, run: Run, entry: FailureEntry) -> FailureEntry:
        """Add the log excerpt (for detailed entries), where the full log is and the memory hint."""
        memory = self._memory_of(run, entry)
        job = self.engine.db.job(run.id, entry.analysis)
        rule = job.failure_rule if job else None
        try:
            excerpt = self.engine.log_excerpt(run.id, entry.analysis, entry.attempt) if entry.detailed else None
        except (EngineError, StoreError) as exc:
            log.warning("no log excerpt for %s/%s: %s", run.id, entry.analysis, exc)
            excerpt = None
        if excerpt is not None:
            text = excerpt.excerpt.text if excerpt.excerpt else None
            return FailureEntry(
                entry.analysis, entry.attempt, entry.reason, entry.exit_code, excerpt.full_log, True, text,
                excerpt.explanation, memory, render.is_memory_death(entry.reason, entry.exit_code, text),
                rule=rule)
        return FailureEntry(entry.analysis, entry.attempt, entry.reason, entry.exit_code,
                            self.engine.log_uri(run, entry.analysis, entry.attempt), entry.detailed, None, None,
                            memory,
                            render.is_memory_death(entry.reason, entry.exit_code, None), rule=rule)

    def _memory_of(self, run: Run, entry: FailureEntry) -> int | None:
        job = self.engine.db.job(run.id, entry.analysis)
        attempt = self.engine.db.attempt(job.id, entry.attempt) if job else None
        resources = {**run.resources, **((attempt.resources if attempt else None) or {})}
        memory = resources.get("memory_mib")
        return int(memory) if memory else None
