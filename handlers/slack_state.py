"""What Slack has been shown, kept in the run database (tables of migration 2 in bot/db.py).

The reporter records a Slack side effect only after Slack accepted it, so a crash or a storm of
429s leaves the record unwritten and the next sync tries again: the latest state is shown in the
end and no failure reply is lost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from bot.db import RunDB
from handlers.render import FailureEntry

FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass(frozen=True)
class SlackRun:
    run_id: str
    rendered_version: int | None  # the run version the root message shows
    synced_version: int | None  # the run version everything in the thread is up to date with
    done_alert_for: float | None  # the finished_at the done alert was posted for


@dataclass(frozen=True)
class PostedFailure:
    message_ts: str
    position: int
    entry: FailureEntry
    retried_shown: bool


class SlackState:
    def __init__(self, db: RunDB) -> None:
        self.db = db

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self.db.transaction() as conn:
            return conn.execute(sql, args).fetchall()

    # -- runs ---------------------------------------------------------------------------------
    def runs_to_sync(self) -> list[str]:
        """Runs with a Slack thread whose latest version Slack has not fully been shown."""
        return [r[0] for r in self._read(
            """SELECT r.id FROM runs r LEFT JOIN slack_runs s ON s.run_id = r.id
               WHERE r.slack_channel IS NOT NULL AND r.slack_thread_ts IS NOT NULL
                 AND (s.synced_version IS NULL OR s.synced_version != r.version)
               ORDER BY r.created_at""")]

    def get(self, run_id: str) -> SlackRun:
        rows = self._read("SELECT * FROM slack_runs WHERE run_id = ?", (run_id,))
        if not rows:
            return SlackRun(run_id, None, None, None)
        r = rows[0]
        return SlackRun(run_id, r["rendered_version"], r["synced_version"], r["done_alert_for"])

    def _upsert(self, run_id: str, column: str, value: object, extra: str = "", extra_value: object = None) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO slack_runs (run_id) VALUES (?)", (run_id,))
            if extra:
                conn.execute(f"UPDATE slack_runs SET {column} = ?, {extra} = ? WHERE run_id = ?",
                             (value, extra_value, run_id))
            else:
                conn.execute(f"UPDATE slack_runs SET {column} = ? WHERE run_id = ?", (value, run_id))

    def set_rendered(self, run_id: str, version: int) -> None:
        self._upsert(run_id, "rendered_version", version)

    def set_synced(self, run_id: str, version: int) -> None:
        self._upsert(run_id, "synced_version", version)

    def set_done_alert(self, run_id: str, finished_at: float, ts: str) -> None:
        self._upsert(run_id, "done_alert_for", finished_at, "done_alert_ts", ts)

    # -- failure replies ----------------------------------------------------------------------
    def unposted_failures(self, run_id: str) -> list[tuple[str, int, str | None, int | None]]:
        """(analysis, attempt, reason, exit_code) of jobs failed for good with no reply yet."""
        return [(r[0], r[1], r[2], r[3]) for r in self._read(
            """SELECT j.analysis, j.attempt, j.reason, j.exit_code FROM jobs j
               WHERE j.run_id = ? AND j.state = 'FAILED' AND NOT EXISTS (
                   SELECT 1 FROM slack_failures f
                   WHERE f.run_id = j.run_id AND f.analysis = j.analysis AND f.attempt = j.attempt)
               ORDER BY j.analysis""", (run_id,))]

    def record_failures(self, run_id: str, message_ts: str, entries: Sequence[FailureEntry], now: float) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                """INSERT OR IGNORE INTO slack_failures (run_id, analysis, attempt, message_ts, position, detailed,
                       reason, exit_code, excerpt, full_log, explanation, memory_mib, out_of_memory, posted_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [(run_id, e.analysis, e.attempt, message_ts, i, int(e.detailed), e.reason, e.exit_code, e.excerpt,
                  e.full_log, e.explanation, e.memory_mib, int(e.out_of_memory), now)
                 for i, e in enumerate(entries)])

    def failure_post(self, run_id: str, analysis: str, attempt: int) -> PostedFailure | None:
        rows = self._read("SELECT * FROM slack_failures WHERE run_id = ? AND analysis = ? AND attempt = ?",
                          (run_id, analysis, attempt))
        return _posted(rows[0]) if rows else None

    def message(self, run_id: str, message_ts: str) -> list[PostedFailure]:
        return [_posted(r) for r in self._read(
            "SELECT * FROM slack_failures WHERE run_id = ? AND message_ts = ? ORDER BY position",
            (run_id, message_ts))]

    def note_retries(self, run_id: str) -> None:
        """Mark replies whose analysis has since been retried (by a button, `/cyto retry`, the CLI
        or a notebook), naming who retried it."""
        with self.db.transaction() as conn:
            conn.execute(
                """UPDATE slack_failures SET retried_by = (
                       SELECT COALESCE(j.retried_by, 'someone') FROM jobs j
                       WHERE j.run_id = slack_failures.run_id AND j.analysis = slack_failures.analysis)
                   WHERE run_id = ? AND retried_by IS NULL AND EXISTS (
                       SELECT 1 FROM jobs j WHERE j.run_id = slack_failures.run_id
                         AND j.analysis = slack_failures.analysis AND j.attempt > slack_failures.attempt)""",
                (run_id,))

    def messages_to_edit(self, run_id: str) -> list[str]:
        return [r[0] for r in self._read(
            """SELECT DISTINCT message_ts FROM slack_failures
               WHERE run_id = ? AND retried_by IS NOT NULL AND retried_shown = 0 ORDER BY message_ts""",
            (run_id,))]

    def set_shown(self, run_id: str, message_ts: str, analyses: Sequence[tuple[str, int]]) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                """UPDATE slack_failures SET retried_shown = 1
                   WHERE run_id = ? AND message_ts = ? AND analysis = ? AND attempt = ? AND retried_by IS NOT NULL""",
                [(run_id, message_ts, a, n) for a, n in analyses])


def _posted(r: sqlite3.Row) -> PostedFailure:
    entry = FailureEntry(
        analysis=r["analysis"], attempt=r["attempt"], reason=r["reason"], exit_code=r["exit_code"],
        full_log=r["full_log"], detailed=bool(r["detailed"]), excerpt=r["excerpt"], explanation=r["explanation"],
        memory_mib=r["memory_mib"], out_of_memory=bool(r["out_of_memory"]), retried_by=r["retried_by"])
    return PostedFailure(r["message_ts"], r["position"], entry, bool(r["retried_shown"]))
