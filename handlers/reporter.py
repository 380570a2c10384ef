"""Bring Slack up to date from the run database after each poll.

The database is the truth and `slack_state` records what Slack has been shown, so `sync()` is
idempotent and a restarted bot (a new Reporter on the same database) carries on in the same threads.
Per run and per sync: each failure found for good is replied once (grouped), failure replies whose
analysis was retried are edited, the root message is edited at most once and only when the run's
version changed, and the done alert is posted once per finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.db import Run
from bot.engine import Engine, EngineError
from bot.store import StoreError
from handlers import render, results
from handlers.render import FailureEntry, SlackMessage
from handlers.slack_state import SlackState

log = logging.getLogger(__name__)
SLACK_ERRORS = (SlackApiError, SlackClientError, OSError)


class Reporter:
    def __init__(self, engine: Engine, client: WebClient, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.client = client
        self.state = SlackState(engine.db)
        self.clock = clock
        # One writer to Slack at a time: the poll thread and a button click may both edit a message,
        # and each renders the database as it is when it holds the lock, so the last edit is the newest.
        self._lock = threading.RLock()

    def sync(self) -> int:
        """Update every run whose thread is behind the database; returns the runs brought up to date."""
        done = 0
        for run_id in self.state.runs_to_sync():
            try:
                if self.sync_run(run_id):
                    done += 1
            except SLACK_ERRORS as exc:
                # Nothing was recorded for what Slack refused: the next sync tries again.
                log.warning("Slack update of run %s postponed: %s", run_id, _describe(exc))
        return done

    def sync_run(self, run_id: str) -> bool:
        with self._lock:
            run = self.engine.get_run(run_id)
            if not run.slack_channel or not run.slack_thread_ts:
                return False
            # Synced up to the version read before any step: a change during the steps shows as a
            # newer version and brings the run back next sync.
            start_version = run.version
            self._post_failures(run)
            self._edit_retried(run)
            shown = self.state.get(run_id)
            if shown.rendered_version != start_version:
                summary = self.engine.summary(run_id)
                self._update(run, render.root_message(summary))
                self.state.set_rendered(run_id, summary.run.version)
            run = self.engine.get_run(run_id)
            # The alert follows the failure replies: a failure found after _post_failures waits a sync.
            if (run.state.is_finished and run.finished_at is not None and shown.done_alert_for != run.finished_at
                    and not self.state.unposted_failures(run_id)):
                summary = self.engine.summary(run_id)
                output = self.engine.output_uri(run)
                done = results.prepare(self.engine, summary, output)  # the report, QC verdicts and link
                ts = self._post(run, done.message)
                self.state.set_done_alert(run_id, run.finished_at, ts)
                self._upload_overview(run, done)
            self.state.set_synced(run_id, start_version)
            return True

    def refresh_failures(self, run_id: str) -> None:
        """Edit failure replies whose analysis has been retried (right after a click or command)."""
        with self._lock:
            run = self.engine.get_run(run_id)
            if run.slack_channel and run.slack_thread_ts:
                self._edit_retried(run)

    # -- steps --------------------------------------------------------------------------------
    def _post_failures(self, run: Run) -> None:
        failed = self.state.unposted_failures(run.id)
        if not failed:
            return
        entries = [FailureEntry(analysis, attempt, reason, exit_code, full_log="")
                   for analysis, attempt, reason, exit_code in failed]
        for group in render.plan_failure_messages(entries):
            group = [self._complete(run, e) for e in group]
            ts = self._post(run, render.failure_message(run, group))
            self.state.record_failures(run.id, ts, group, self.clock())

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

    def _edit_retried(self, run: Run) -> None:
        self.state.note_retries(run.id)
        for message_ts in self.state.messages_to_edit(run.id):
            posts = self.state.message(run.id, message_ts)
            self._update(run, render.failure_message(run, [p.entry for p in posts]), ts=message_ts)
            self.state.set_shown(run.id, message_ts,
                                 [(p.entry.analysis, p.entry.attempt) for p in posts if p.entry.retried_by])

    def _upload_overview(self, run: Run, done: results.DoneResults) -> None:
        # After the alert is recorded: a refused upload is logged, never a second alert.
        try:
            results.upload_overview(self.client, run, done)
        except SLACK_ERRORS as exc:
            log.warning("overview of run %s not uploaded: %s", run.id, _describe(exc))

    # -- Slack calls --------------------------------------------------------------------------
    def _post(self, run: Run, message: SlackMessage) -> str:
        response = self.client.chat_postMessage(channel=run.slack_channel or "", thread_ts=run.slack_thread_ts,
                                                unfurl_links=False, unfurl_media=False, **message.payload())
        return str(response["ts"])

    def _update(self, run: Run, message: SlackMessage, ts: str | None = None) -> None:
        self.client.chat_update(channel=run.slack_channel or "", ts=ts or run.slack_thread_ts or "",
                                **message.payload())


def _describe(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", exc))
    return str(exc)

