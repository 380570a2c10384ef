"""Plan what Slack should show from the run database: the reporter writes intents, never calls Slack.

The reporter is one consumer of the ledger's durable events (`Cyto.events`): it keeps its own cursor
(`slack_cursor`, handlers/slack_schema.py) and plans each run whose events it has not seen yet,
whichever process applied them (this bot, another bot, the CLI, a notebook). `slack_state` records
what has been planned, and the outbox (handlers/outbox.py) holds each message until
handlers/sender.py has delivered it. Planning is idempotent, so any number of bots may run it on one
database, and a restarted bot carries on from the cursor in the same threads. Per run: each failure
found for good is recorded in exactly one reply (grouped), failure replies whose analysis was
retried get an edit, the root message gets an edit whenever the run's version changed (coalesced:
one pending edit per run), and the done alert is planned once per finish, after the failure
replies have been delivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.api import Cyto, EngineError, Run
from bot.states import JobState, RunState
from bot.store import StoreError
from handlers import render, results
from handlers.outbox import Kind, Outbox
from handlers.render import FailureEntry
from handlers.slack_state import SlackState

log = logging.getLogger(__name__)

EVENTS_PER_READ = 500
READS_PER_PLAN = 20  # a long backlog (a first start on an old ledger) is planned over a few cycles


class Reporter:
    def __init__(self, cyto: Cyto, state: SlackState, outbox: Outbox, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cyto = cyto
        self.state = state
        self.outbox = outbox
        self.clock = clock

    def plan(self) -> int:
        """Record intents for every run with events after the cursor; returns the runs planned."""
        cursor = start = self.state.cursor()
        runs: dict[str, None] = {}  # each run once, in the order of its first new event
        for _ in range(READS_PER_PLAN):
            events = self.cyto.events(cursor, limit=EVENTS_PER_READ)
            runs.update(dict.fromkeys(e.run_id for e in events))
            cursor = events[-1].seq if events else cursor
            if len(events) < EVENTS_PER_READ:
                break
        planned = sum(1 for run_id in runs if self.plan_run(run_id))
        if cursor > start:
            self.state.advance(cursor)  # only once planned: a crash before this plans them again
        return planned

    def plan_run(self, run_id: str) -> bool:
        run = self.cyto.get_run(run_id)
        if run.state == RunState.HELD and run.slack_channel and not self.state.has_root(run.id):
            # A crash between recording the run and its hold: the root message is planned now, so no
            # run waits for ever.
            self.state.hold(run.id, run.slack_channel, run.requested_by, None, self.clock())
            return True
        if not run.slack_channel or not run.slack_thread_ts or self.state.synced_version(run.id) == run.version:
            return False
        # Planned up to the version read before any step: a change during the steps shows as a
        # newer event and brings the run back at the next plan.
        start_version = run.version
        self._plan_failures(run)
        self.plan_retried(run)
        self.outbox.want_edit(f"edit:root:{run.id}", run.id, Kind.EDIT_ROOT, run.slack_channel, run.slack_thread_ts,
                              start_version, self.clock())
        if run.state.is_finished and run.finished_at is not None:
            # Rendered now, as this finish was; the outbox sends it after the run's failure replies.
            summary = self.cyto.summary(run.id)
            if summary.run.finished_at != run.finished_at:
                return False  # reopened meanwhile: planned again at its next event
            done = results.prepare(self.cyto, summary, self.cyto.output_uri(run))  # report, QC verdicts, link
            with self.outbox.tables.transaction() as conn:
                self.outbox.add(conn, f"done:{run.id}:{run.finished_at!r}", run.id, Kind.DONE, run.slack_channel,
                                self.clock(), thread_ts=run.slack_thread_ts, payload=done.message.payload())
        self.state.set_synced(run_id, start_version)
        return True

    def plan_retried(self, run: Run) -> None:
        """Edits for failure replies whose analysis has since been retried (by a button, `/cyto
        retry`, the CLI or a notebook)."""
        if not run.slack_channel:
            return
        self.state.note_retries(run.id, [(j.analysis, j.attempt, j.retried_by) for j in self.cyto.jobs(run.id)
                                         if j.attempt > 1])
        for message_key, message_ts in self.state.messages_to_edit(run.id):
            self.outbox.want_edit(f"edit:{message_key}", run.id, Kind.EDIT_FAILURES, run.slack_channel, message_ts,
                                  run.version, self.clock())

    # -- failure replies ----------------------------------------------------------------------
    def _plan_failures(self, run: Run) -> None:
        replied = self.state.replied(run.id)
        failed = [j for j in self.cyto.jobs(run.id) if j.state == JobState.FAILED
                  and (j.analysis, j.attempt) not in replied]
        if not failed:
            return
        entries = [FailureEntry(j.analysis, j.attempt, j.reason, j.exit_code, full_log="", rule=j.failure_rule)
                   for j in failed]
        complete = [self._complete(run, e) for group in render.plan_failure_messages(entries) for e in group]
        self.state.plan_failure_replies(run.id, run.slack_channel or "", run.slack_thread_ts or "", complete,
                                        self.clock())

    def _complete(self, run: Run, entry: FailureEntry) -> FailureEntry:
        """Add the log excerpt (for detailed entries), where the full log is, and what a retry may
        ask for (the library's decision: out of memory? with how much more?)."""
        try:
            excerpt = self.cyto.log_excerpt(run.id, entry.analysis, entry.attempt) if entry.detailed else None
        except (EngineError, StoreError) as exc:
            log.warning("no log excerpt for %s/%s: %s", run.id, entry.analysis, exc)
            excerpt = None
        text = excerpt.excerpt.text if excerpt is not None and excerpt.excerpt else None
        advice = self.cyto.retry_advice(run.id, entry.analysis, entry.attempt, entry.reason, entry.exit_code, text)
        if excerpt is not None:
            return FailureEntry(
                entry.analysis, entry.attempt, entry.reason, entry.exit_code, excerpt.full_log, True, text,
                excerpt.explanation, advice.memory_mib, advice.out_of_memory, rule=entry.rule,
                retry_memory_mib=advice.suggested_memory_mib)
        return FailureEntry(entry.analysis, entry.attempt, entry.reason, entry.exit_code,
                            self.cyto.log_uri(run, entry.analysis, entry.attempt), entry.detailed, None, None,
                            advice.memory_mib, advice.out_of_memory, rule=entry.rule,
                            retry_memory_mib=advice.suggested_memory_mib)
