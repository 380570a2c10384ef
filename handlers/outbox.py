"""The Slack outbox: every message the bot means to post or edit, recorded before it is sent.

An intent is a row of `slack_outbox` (handlers/slack_schema.py) with a stable key — `root:RUN`,
`failures:RUN:ANALYSIS:ATTEMPT`, `done:RUN:FINISHED_AT`, `edit:root:RUN`, `edit:failures:KEY`.
A sender claims a row with a compare-and-set (`pending` → `sending` under its token), so two bots
on one database never both send it, calls Slack, and records the outcome. A claim left by a
process that died, or a post whose answer never came, marks the row `uncertain`: before posting it
again the sender looks for a message carrying the key in its metadata, so a post reaches Slack at
most once. Edits (`chat.update`) are idempotent and simply retried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot import claims
from bot.api import ComponentTables, Conn, Record

# Slack message metadata marking a post with its outbox key (`conversations.replies`/`history`
# return it with `include_all_metadata`).
EVENT_TYPE = "cyto_outbox"
# A claim older than this is taken over even when its process may be alive (another host, hung).
CLAIM_TIMEOUT_S = 600.0


class Kind(StrEnum):
    ROOT = "root"  # the run's root message; its ts releases the run's hold
    FAILURES = "failures"  # one failure reply in the thread
    DONE = "done"  # the done alert in the thread
    EDIT_ROOT = "edit_root"  # the root message brought up to the run's version
    EDIT_FAILURES = "edit_failures"  # a failure reply showing who retried what

    @property
    def is_post(self) -> bool:
        return self in (Kind.ROOT, Kind.FAILURES, Kind.DONE)

    @property
    def method(self) -> str:
        return "chat.postMessage" if self.is_post else "chat.update"


@dataclass(frozen=True)
class Intent:
    key: str
    run_id: str
    kind: Kind
    channel: str
    thread_ts: str | None
    target_ts: str | None
    version: int | None
    tries: int
    uncertain: bool
    created_at: float
    payload: dict[str, Any] | None


def _intent(row: Record) -> Intent:
    return Intent(row["key"], row["run_id"], Kind(row["kind"]), row["channel"], row["thread_ts"], row["target_ts"],
                  row["version"], row["tries"], bool(row["uncertain"]), row["created_at"],
                  json.loads(row["payload"]) if row["payload"] else None)


class Outbox:
    def __init__(self, tables: ComponentTables) -> None:
        self.tables = tables  # the Slack component's tables (`Cyto.component(SLACK_SCHEMA)`)

    # -- recording intents --------------------------------------------------------------------
    def add(self, conn: Conn, key: str, run_id: str, kind: Kind, channel: str, now: float, *,
            thread_ts: str | None = None, payload: dict[str, Any] | None = None) -> bool:
        """Record a post, once per key (inside the caller's transaction). `payload`: the message as
        it must be shown (a snapshot), rather than rendered from the database when it is sent."""
        cur = conn.execute(
            """INSERT INTO slack_outbox (key, run_id, kind, channel, thread_ts, payload, state, created_at)
               VALUES (?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING""",
            (key, run_id, kind.value, channel, thread_ts, json.dumps(payload) if payload else None, now))
        return bool(cur.rowcount)

    def want_edit(self, key: str, run_id: str, kind: Kind, channel: str, target_ts: str, version: int,
                  now: float) -> None:
        """Ask for an edit showing at least `version`; a newer request replaces an older one."""
        with self.tables.transaction() as conn:
            conn.execute(
                """INSERT INTO slack_outbox (key, run_id, kind, channel, target_ts, version, state, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)
                   ON CONFLICT(key) DO UPDATE SET version = excluded.version,
                       state = CASE WHEN slack_outbox.state = 'sending' THEN slack_outbox.state ELSE 'pending' END,
                       created_at = CASE WHEN slack_outbox.state = 'done' THEN excluded.created_at
                                         ELSE slack_outbox.created_at END
                   WHERE excluded.version > COALESCE(slack_outbox.version, -1)""",
                (key, run_id, kind.value, channel, target_ts, version, now))

    # -- claiming -----------------------------------------------------------------------------
    def claim(self, token: str, now: float, *, kinds: Sequence[Kind], key: str | None = None,
              run_id: str | None = None) -> Intent | None:
        """Claim the oldest due intent (or the one named): a compare-and-set on its state, so one
        sender at a time. A `sending` row whose claimer is gone is taken over, marked uncertain."""
        if not kinds:
            return None
        with self.tables.transaction() as conn:
            where, args = [f"kind IN ({','.join('?' * len(kinds))})"], [k.value for k in kinds]
            if key is not None:
                where.append("key = ?")
                args.append(key)
            if run_id is not None:
                where.append("run_id = ?")
                args.append(run_id)
            # A done alert waits for the run's failure replies: it comes last in the thread.
            rows = conn.execute(
                f"""SELECT * FROM slack_outbox o WHERE {' AND '.join(where)} AND (
                        (state = 'pending' AND not_before <= ?) OR state = 'sending')
                      AND NOT (kind = 'done' AND EXISTS (
                        SELECT 1 FROM slack_outbox f WHERE f.run_id = o.run_id AND f.kind = 'failures'
                          AND f.state IN ('pending', 'sending')))
                    ORDER BY created_at, key LIMIT 200""", [*args, now]).fetchall()
            for row in rows:
                if row["state"] == "sending":
                    abandoned = claims.dead_here(row["claim_token"] or "") or \
                        now - (row["claimed_at"] or 0) > CLAIM_TIMEOUT_S
                    if row["claim_token"] == token or not abandoned:
                        continue
                    uncertain = 1  # its claimer died mid-call: the post may have reached Slack
                else:
                    uncertain = row["uncertain"]
                cur = conn.execute(
                    """UPDATE slack_outbox SET state = 'sending', claim_token = ?, claimed_at = ?, uncertain = ?
                       WHERE key = ? AND state = ? AND COALESCE(claim_token, '') = COALESCE(?, '')""",
                    (token, now, uncertain, row["key"], row["state"], row["claim_token"]))
                if cur.rowcount:
                    claimed = conn.execute("SELECT * FROM slack_outbox WHERE key = ?", (row["key"],)).fetchone()
                    return _intent(claimed)
        return None

    # -- outcomes (each only by the claim's holder) -------------------------------------------
    def sent(self, key: str, token: str, ts: str | None, now: float, shown_version: int | None = None) -> bool:
        with self.tables.transaction() as conn:
            cur = conn.execute(
                """UPDATE slack_outbox SET state = CASE WHEN version IS NOT NULL AND version > COALESCE(?, version)
                                                   THEN 'pending' ELSE 'done' END,
                       ts = COALESCE(?, ts), shown_version = COALESCE(?, shown_version), done_at = ?,
                       claim_token = NULL, uncertain = 0, error = NULL
                   WHERE key = ? AND state = 'sending' AND claim_token = ?""",
                (shown_version, ts, shown_version, now, key, token))
            if cur.rowcount and ts is not None:
                conn.execute("UPDATE slack_failures SET message_ts = ? WHERE message_key = ?", (ts, key))
            return bool(cur.rowcount)

    def later(self, key: str, token: str, not_before: float, error: str, *, uncertain: bool = False,
              counts: bool = True) -> int:
        """Give the claim back to be tried again after `not_before`; returns the tries so far."""
        with self.tables.transaction() as conn:
            conn.execute(
                """UPDATE slack_outbox SET state = 'pending', claim_token = NULL, not_before = ?, error = ?,
                       uncertain = CASE WHEN uncertain > ? THEN uncertain ELSE ? END,
                       tries = tries + ?
                   WHERE key = ? AND state = 'sending' AND claim_token = ?""",
                (not_before, error, int(uncertain), int(uncertain), int(counts), key, token))
            row = conn.execute("SELECT tries FROM slack_outbox WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def failed(self, key: str, token: str, error: str, now: float) -> bool:
        with self.tables.transaction() as conn:
            cur = conn.execute(
                """UPDATE slack_outbox SET state = 'failed', claim_token = NULL, error = ?, done_at = ?
                   WHERE key = ? AND state = 'sending' AND claim_token = ?""", (error, now, key, token))
            return bool(cur.rowcount)

    # -- reading ------------------------------------------------------------------------------
    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Record]:
        # A plain read (no write lock): /healthz must answer while a writer holds the database.
        return self.tables.query(sql, args)

    def backlog(self) -> dict[str, int]:
        """Intents not yet delivered, by kind."""
        return {kind: n for kind, n in self._read(
            "SELECT kind, COUNT(*) FROM slack_outbox WHERE state IN ('pending', 'sending') GROUP BY kind")}
