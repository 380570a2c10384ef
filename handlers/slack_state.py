"""What Slack has been, or is about to be, shown, kept in the run database (the `slack` component's
tables, handlers/slack_schema.py): the reporter's cursor in the ledger's events, per run the version
planned, each failure reply (recorded with its outbox key before it is posted, its `ts` once Slack
accepted it), the holds of runs waiting for their thread, and the slash commands received (so a
re-delivery acts once). Only the Slack tables are read here; runs and jobs come from `bot.api.Cyto`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.api import ComponentTables, Record
from handlers import render
from handlers.outbox import Kind, Outbox
from handlers.render import FailureEntry

REPORTER_CURSOR = "reporter"


@dataclass(frozen=True)
class PostedFailure:
    message_key: str
    message_ts: str | None
    position: int
    entry: FailureEntry
    retried_shown: bool


class SlackState:
    def __init__(self, tables: ComponentTables) -> None:
        self.tables = tables  # the Slack component's tables (`Cyto.component(SLACK_SCHEMA)`)

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Record]:
        # A plain read: taking the write lock to read would make the engine's poll wait for Slack's job.
        return self.tables.query(sql, args)

    # -- the reporter's cursor in the ledger's events ------------------------------------------
    def cursor(self, name: str = REPORTER_CURSOR) -> int:
        rows = self._read("SELECT seq FROM slack_cursor WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def advance(self, seq: int, name: str = REPORTER_CURSOR) -> None:
        """Move the cursor forward to `seq` (never back: bots planning side by side may finish out of order)."""
        with self.tables.transaction() as conn:
            conn.execute("INSERT INTO slack_cursor (name, seq) VALUES (?, 0) ON CONFLICT DO NOTHING", (name,))
            conn.execute("UPDATE slack_cursor SET seq = ? WHERE name = ? AND seq < ?", (seq, name, seq))

    # -- runs ---------------------------------------------------------------------------------
    def synced_version(self, run_id: str) -> int | None:
        rows = self._read("SELECT synced_version FROM slack_runs WHERE run_id = ?", (run_id,))
        return rows[0][0] if rows else None

    def set_synced(self, run_id: str, version: int) -> None:
        with self.tables.transaction() as conn:
            conn.execute("INSERT INTO slack_runs (run_id) VALUES (?) ON CONFLICT DO NOTHING", (run_id,))
            conn.execute("UPDATE slack_runs SET synced_version = ? WHERE run_id = ?", (version, run_id))

    # -- failure replies ----------------------------------------------------------------------
    def replied(self, run_id: str) -> set[tuple[str, int]]:
        """(analysis, attempt) of every failure with a reply recorded."""
        return {(r[0], r[1]) for r in self._read(
            "SELECT analysis, attempt FROM slack_failures WHERE run_id = ?", (run_id,))}

    def plan_failure_replies(self, run_id: str, channel: str, thread_ts: str, entries: Sequence[FailureEntry],
                             now: float) -> list[str]:
        """Record failure replies and their outbox intents in one transaction. Entries another bot
        recorded meanwhile are left out, so each failure is in exactly one reply. Returns the keys."""
        keys = []
        with self.tables.transaction() as conn:
            fresh = [e for e in entries if not conn.execute(
                "SELECT 1 FROM slack_failures WHERE run_id = ? AND analysis = ? AND attempt = ?",
                (run_id, e.analysis, e.attempt)).fetchone()]
            for group in render.plan_failure_messages(fresh):
                key = f"failures:{run_id}:{group[0].analysis}:{group[0].attempt}"
                conn.executemany(
                    """INSERT INTO slack_failures (run_id, analysis, attempt, message_key, position, detailed,
                           reason, exit_code, excerpt, full_log, explanation, memory_mib, out_of_memory, posted_at,
                           rule, retry_memory_mib)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [(run_id, e.analysis, e.attempt, key, i, int(e.detailed), e.reason, e.exit_code,
                      e.excerpt if e.detailed else None, e.full_log, e.explanation, e.memory_mib,
                      int(e.out_of_memory), now, e.rule, e.retry_memory_mib) for i, e in enumerate(group)])
                Outbox(self.tables).add(conn, key, run_id, Kind.FAILURES, channel, now, thread_ts=thread_ts)
                keys.append(key)
        return keys

    def message(self, run_id: str, message_ts: str) -> list[PostedFailure]:
        return [_posted(r) for r in self._read(
            "SELECT * FROM slack_failures WHERE run_id = ? AND message_ts = ? ORDER BY position",
            (run_id, message_ts))]

    def message_by_key(self, run_id: str, message_key: str) -> list[PostedFailure]:
        return [_posted(r) for r in self._read(
            "SELECT * FROM slack_failures WHERE run_id = ? AND message_key = ? ORDER BY position",
            (run_id, message_key))]

    def note_retries(self, run_id: str, jobs: Sequence[tuple[str, int, str | None]]) -> None:
        """Mark replies whose analysis has since been retried (by a button, `/cyto retry`, the CLI
        or a notebook), naming who retried it. `jobs`: (analysis, current attempt, retried by)."""
        with self.tables.transaction() as conn:
            conn.executemany(
                """UPDATE slack_failures SET retried_by = ?
                   WHERE run_id = ? AND analysis = ? AND attempt < ? AND retried_by IS NULL""",
                [(by or "someone", run_id, analysis, attempt) for analysis, attempt, by in jobs if attempt > 1])

    def messages_to_edit(self, run_id: str) -> list[tuple[str, str]]:
        """(message key, ts) of posted failure replies that do not show a retry yet."""
        return [(r[0], r[1]) for r in self._read(
            """SELECT DISTINCT message_key, message_ts FROM slack_failures
               WHERE run_id = ? AND retried_by IS NOT NULL AND retried_shown = 0 AND message_ts IS NOT NULL
               ORDER BY message_key""", (run_id,))]

    def set_shown_by_key(self, run_id: str, message_key: str, analyses: Sequence[tuple[str, int]]) -> None:
        with self.tables.transaction() as conn:
            conn.executemany(
                """UPDATE slack_failures SET retried_shown = 1 WHERE run_id = ? AND message_key = ?
                       AND analysis = ? AND attempt = ? AND retried_by IS NOT NULL""",
                [(run_id, message_key, a, n) for a, n in analyses])

    # -- holds: a run recorded but not submitted until its thread exists ------------------------
    def hold(self, run_id: str, channel: str, user: str, response_url: str | None, now: float) -> None:
        """Record the hold and the root message's intent in one transaction."""
        with self.tables.transaction() as conn:
            conn.execute("""INSERT INTO slack_holds (run_id, channel, "user", response_url, state, created_at)
                            VALUES (?, ?, ?, ?, 'held', ?) ON CONFLICT DO NOTHING""",
                         (run_id, channel, user, response_url, now))
            Outbox(self.tables).add(conn, root_key(run_id), run_id, Kind.ROOT, channel, now)

    def hold_of(self, run_id: str) -> Hold | None:
        rows = self._read("SELECT * FROM slack_holds WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        r = rows[0]
        return Hold(r["run_id"], r["channel"], r["user"], r["response_url"], r["state"], r["reason"])

    def resolve_hold(self, run_id: str, state: str, reason: str | None, now: float) -> Hold | None:
        with self.tables.transaction() as conn:
            conn.execute("""UPDATE slack_holds SET state = ?, reason = ?, resolved_at = ?
                            WHERE run_id = ? AND state = 'held'""", (state, reason, now, run_id))
        return self.hold_of(run_id)

    def has_root(self, run_id: str) -> bool:
        """Whether the run's root message was recorded (its hold's intent)."""
        return bool(self._read("SELECT 1 FROM slack_outbox WHERE key = ?", (root_key(run_id),)))

    # -- slash commands: each acts once -------------------------------------------------------
    def first_delivery(self, trigger_id: str, user: str, channel: str, text: str, retry_num: int | None,
                       now: float) -> Command | None:
        """Record a command by its trigger_id. None when it is new; the earlier record otherwise."""
        with self.tables.transaction() as conn:
            cur = conn.execute(
                """INSERT INTO slack_commands (trigger_id, "user", channel, text, retry_num, received_at)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (trigger_id, user, channel, text, retry_num, now))
            if cur.rowcount:
                return None
            row = conn.execute("SELECT * FROM slack_commands WHERE trigger_id = ?", (trigger_id,)).fetchone()
        return Command(row["trigger_id"], row["user"], row["channel"], row["text"], row["run_id"])

    def command_started(self, trigger_id: str, run_id: str) -> None:
        with self.tables.transaction() as conn:
            conn.execute("UPDATE slack_commands SET run_id = ? WHERE trigger_id = ?", (run_id, trigger_id))


@dataclass(frozen=True)
class Hold:
    run_id: str
    channel: str
    user: str
    response_url: str | None
    state: str  # held | released | abandoned
    reason: str | None


@dataclass(frozen=True)
class Command:
    trigger_id: str
    user: str
    channel: str
    text: str
    run_id: str | None


def root_key(run_id: str) -> str:
    return f"root:{run_id}"


def _posted(r: Record) -> PostedFailure:
    entry = FailureEntry(
        analysis=r["analysis"], attempt=r["attempt"], reason=r["reason"], exit_code=r["exit_code"],
        full_log=r["full_log"], detailed=bool(r["detailed"]), excerpt=r["excerpt"], explanation=r["explanation"],
        memory_mib=r["memory_mib"], out_of_memory=bool(r["out_of_memory"]), retried_by=r["retried_by"],
        rule=r["rule"], retry_memory_mib=r["retry_memory_mib"])
    return PostedFailure(r["message_key"], r["message_ts"], r["position"], entry, bool(r["retried_shown"]))
