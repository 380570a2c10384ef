"""Deliver the Slack outbox: claim an intent, render it from the database, call Slack once, record.

What Slack answers decides what happens next, and nothing here ever sleeps:
- accepted: the `ts` is recorded (for a root message, the run's hold is released);
- 429: the intent (and every call of that method) waits for Retry-After, however long; no try used;
- `invalid_auth` and friends: everything waits and /healthz reports it; no try used;
- no answer (connection reset, timeout, 5xx): a post is marked uncertain and looked up by its key
  before it is posted again; an edit is simply tried again;
- any other refusal (`not_in_channel`, …): the intent failed for good; a root message that fails
  for good abandons its run (nothing was submitted) and the person who asked is told.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.api import Cyto
from bot.claims import new_token
from bot.states import RunState
from handlers import render, results
from handlers.outbox import EVENT_TYPE, Intent, Kind, Outbox
from handlers.render import SlackMessage
from handlers.slack_state import SlackState

log = logging.getLogger(__name__)
AUTH_ERRORS = frozenset({"invalid_auth", "account_inactive", "token_revoked", "token_expired", "not_authed",
                         "missing_scope", "team_access_not_granted"})
# A root message is given up (and its run abandoned) after this many tries without an answer.
ROOT_TRIES = 5
AUTH_PAUSE_S = 60.0
AUTH_CHECK_S = 300.0
RETRY_BASE_S = 0.5
RETRY_MAX_S = 300.0
LOOKUP_WINDOW_S = 3600.0


@dataclass(frozen=True)
class Rendered:
    message: SlackMessage
    version: int | None = None  # the run version a root edit shows
    retried_shown: tuple[tuple[str, int], ...] = ()  # (analysis, attempt) a failure edit shows as retried


@dataclass(frozen=True)
class Outcome:
    """What one Slack call came to."""

    ts: str | None = None  # accepted (an edit's ts is the edited message's)
    wait_s: float | None = None  # try again after this long
    uncertain: bool = False  # a post may have reached Slack
    counts: bool = True  # the wait uses up one of the intent's tries
    error: str | None = None  # Slack's error, or the connection's


class Sender:
    def __init__(self, cyto: Cyto, client: WebClient, state: SlackState, outbox: Outbox, *,
                 clock: Callable[[], float] = time.time, on_release: Callable[[str], None] = lambda run_id: None
                 ) -> None:
        self.cyto = cyto
        self.client = client
        self.outbox = outbox
        self.state = state
        self.clock = clock
        self.on_release = on_release  # a run's hold ended: submit it now
        self.token = new_token()
        self.paused_until: dict[str, float] = {}  # Slack method -> when its Retry-After ends
        self.auth_problem: str | None = None  # invalid_auth … until Slack accepts a call again
        self._auth_checked = float("-inf")

    # -- the loop -----------------------------------------------------------------------------
    def deliver(self, *, key: str | None = None, run_id: str | None = None, budget_s: float = 5.0) -> int:
        """Send due intents (or the one named) until none is due or `budget_s` is spent."""
        sent, start = 0, self.clock()
        while self.clock() - start <= budget_s:
            intent = self.outbox.claim(self.token, self.clock(), kinds=self._sendable(), key=key, run_id=run_id)
            if intent is None:
                break
            if self._deliver(intent):
                sent += 1
            if key is not None:
                break
        return sent

    def check_auth(self, every_s: float = AUTH_CHECK_S) -> None:
        """Ask Slack whether it still accepts the token (`auth.test`) now and then, so /healthz
        knows of a revoked token even when no message is waiting, and knows when it is fixed."""
        now = self.clock()
        if now - self._auth_checked < every_s:
            return
        self._auth_checked = now
        try:
            self.client.auth_test()
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
            if error in AUTH_ERRORS:
                self.auth_problem = error
            return
        except Exception:  # unreachable: a delivery will say more
            return
        self.auth_problem = None

    def _sendable(self) -> list[Kind]:
        now = self.clock()
        return [k for k in Kind if self.paused_until.get(k.method, 0) <= now]

    def _deliver(self, intent: Intent) -> bool:
        try:
            outcome, rendered = self._send(intent)
        except Exception as exc:  # a bug or a database error: the claim must not stay taken
            log.exception("Slack %s %s failed", intent.kind.value, intent.key)
            self.outbox.later(intent.key, self.token, self.clock() + RETRY_MAX_S, f"internal error: {exc}",
                              uncertain=intent.kind.is_post)
            return False
        now = self.clock()
        if outcome.ts is not None:
            self.auth_problem = None
            self.outbox.sent(intent.key, self.token, outcome.ts, now, rendered.version if rendered else None)
            self._after_sent(intent, outcome.ts, rendered)
            return True
        if outcome.wait_s is None:  # refused for good
            log.warning("Slack refused %s of run %s: %s", intent.kind.value, intent.run_id, outcome.error)
            self.outbox.failed(intent.key, self.token, outcome.error or "refused", now)
            if intent.kind == Kind.ROOT:
                self._abandon(intent, outcome.error or "refused")
            return False
        if intent.kind == Kind.ROOT and outcome.counts and intent.tries + 1 >= ROOT_TRIES:
            self._give_up_root(intent, outcome.error or "no answer")
            return False
        self.outbox.later(intent.key, self.token, now + outcome.wait_s, outcome.error or "",
                          uncertain=outcome.uncertain, counts=outcome.counts)
        log.info("Slack %s of run %s postponed %.1fs: %s", intent.kind.value, intent.run_id, outcome.wait_s,
                 outcome.error)
        return False

    def _give_up_root(self, intent: Intent, error: str) -> None:
        """The root message's last try failed: one last look (a post whose answer was lost may have
        reached Slack after all), else the run is abandoned with nothing submitted."""
        try:
            found = self._find(intent)
        except Exception:  # Slack cannot even be asked: nothing is known to be posted
            found = None
        if found:
            self.outbox.sent(intent.key, self.token, found, self.clock())
            self._after_sent(intent, found, None)
            return
        self.outbox.failed(intent.key, self.token, error, self.clock())
        self._abandon(intent, f"no answer from Slack after {ROOT_TRIES} tries: {error}")

    # -- one call -----------------------------------------------------------------------------
    def _send(self, intent: Intent) -> tuple[Outcome, Rendered | None]:
        if intent.kind.is_post and intent.uncertain:
            try:
                found = self._find(intent)
            except Exception as exc:  # could not look: do not post blindly
                return self._classify(exc, intent, _lookup_method(intent)), None
            if found:
                return Outcome(ts=found), None
        rendered = self._render(intent)
        if rendered is None:
            return Outcome(error="nothing to show"), None
        message = rendered.message
        try:
            if intent.kind.is_post:
                response = self.client.chat_postMessage(
                    channel=intent.channel, thread_ts=intent.thread_ts, unfurl_links=False, unfurl_media=False,
                    metadata={"event_type": EVENT_TYPE, "event_payload": {"key": intent.key}}, **message.payload())
            else:
                response = self.client.chat_update(channel=intent.channel, ts=intent.target_ts or "",
                                                   **message.payload())
        except Exception as exc:
            return self._classify(exc, intent, intent.kind.method), None
        return Outcome(ts=str(response.get("ts") or intent.target_ts)), rendered

    def _find(self, intent: Intent) -> str | None:
        """The ts of a message already posted for this intent (its key in the metadata), if any."""
        oldest = f"{intent.created_at - LOOKUP_WINDOW_S:.6f}"
        cursor = None
        for _ in range(10):
            if intent.thread_ts:
                page = self.client.conversations_replies(channel=intent.channel, ts=intent.thread_ts, oldest=oldest,
                                                         include_all_metadata=True, limit=200, cursor=cursor)
            else:
                page = self.client.conversations_history(channel=intent.channel, oldest=oldest,
                                                         include_all_metadata=True, limit=200, cursor=cursor)
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                if metadata.get("event_type") == EVENT_TYPE and \
                        (metadata.get("event_payload") or {}).get("key") == intent.key:
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def _classify(self, exc: Exception, intent: Intent, method: str) -> Outcome:
        backoff = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** intent.tries)
        if isinstance(exc, SlackApiError):
            status = getattr(exc.response, "status_code", 200)
            error = str(exc.response.get("error") or f"HTTP {status}") if isinstance(exc.response.data, dict) \
                else f"HTTP {status}"
            if status == 429 or error == "ratelimited":
                wait = _retry_after(exc.response.headers)
                self.paused_until[method] = max(self.paused_until.get(method, 0), self.clock() + wait)
                return Outcome(wait_s=wait, counts=False, error=f"rate limited for {wait:.0f}s")
            if error in AUTH_ERRORS:
                self.auth_problem = error
                for m in ("chat.postMessage", "chat.update"):
                    self.paused_until[m] = self.clock() + AUTH_PAUSE_S
                return Outcome(wait_s=AUTH_PAUSE_S, counts=False, error=error)
            if status >= 500 or error in ("internal_error", "fatal_error", "service_unavailable", "request_timeout"):
                return Outcome(wait_s=backoff, uncertain=intent.kind.is_post, error=error)
            return Outcome(error=error)
        return Outcome(wait_s=backoff, uncertain=intent.kind.is_post, error=f"{type(exc).__name__}: {exc}")

    # -- what each intent shows ---------------------------------------------------------------
    def _render(self, intent: Intent) -> Rendered | None:
        run = self.cyto.get_run(intent.run_id)
        if intent.kind == Kind.ROOT:
            if run.state != RunState.HELD:  # abandoned (cancelled) while it waited: no thread to start
                return None
            return Rendered(render.started_message(run, self.cyto.summary(run.id).total, resumed=intent.uncertain))
        if intent.payload is not None:
            return Rendered(render.SlackMessage.from_payload(intent.payload))
        if intent.kind == Kind.DONE:
            output = self.cyto.output_uri(run)
            return Rendered(render.done_alert(self.cyto.summary(run.id), output))
        if intent.kind == Kind.EDIT_ROOT:
            summary = self.cyto.summary(run.id)
            return Rendered(render.root_message(summary, self.cyto.actions(run.id)), version=summary.run.version)
        posts = self.state.message_by_key(run.id, intent.key.removeprefix("edit:"))
        if not posts:
            return None
        return Rendered(render.failure_message(run, [p.entry for p in posts]), retried_shown=tuple(
            (p.entry.analysis, p.entry.attempt) for p in posts if p.entry.retried_by))

    def _after_sent(self, intent: Intent, ts: str, rendered: Rendered | None) -> None:
        if intent.kind == Kind.ROOT:
            if self.cyto.release(intent.run_id, intent.channel, ts):
                self.state.resolve_hold(intent.run_id, "released", None, self.clock())
                log.info("run %s released: its thread is %s/%s", intent.run_id, intent.channel, ts)
                self.on_release(intent.run_id)
        elif intent.kind == Kind.DONE:
            # After the alert is recorded as sent: a refused upload is logged, never a second alert.
            try:
                results.upload_stored_overview(self.client, self.cyto, self.cyto.get_run(intent.run_id))
            except Exception as exc:
                log.warning("overview of run %s not uploaded: %s", intent.run_id, exc)
        elif rendered is not None and rendered.retried_shown:
            # A failure reply (posted or edited) shows these retries: no edit is needed for them.
            self.state.set_shown_by_key(intent.run_id, intent.key.removeprefix("edit:"), rendered.retried_shown)

    def _abandon(self, intent: Intent, error: str) -> None:
        reason = f"abandoned: the run's Slack thread could not be posted ({error})"
        if not self.cyto.abandon(intent.run_id, reason):
            return
        hold = self.state.resolve_hold(intent.run_id, "abandoned", error, self.clock())
        log.warning("run %s abandoned, nothing submitted: its root message could not be posted (%s)",
                    intent.run_id, error)
        hint = " Invite the app to this channel (`/invite @cyto`) and try again." \
            if error in ("not_in_channel", "channel_not_found") else " Try again in a moment."
        text = (f"⚠️ Could not post in this channel ({render.escape(error)}); run `{intent.run_id}` was "
                f"abandoned and nothing was submitted.{hint}")
        if hold and hold.response_url:
            try:
                WebhookClient(hold.response_url, timeout=10).send(
                    text=text, response_type="ephemeral", replace_original=False)
            except Exception as exc:  # the user may still see it with /cyto status
                log.warning("could not tell %s that run %s was abandoned: %s", hold.user, intent.run_id,
                            type(exc).__name__)


def _lookup_method(intent: Intent) -> str:
    return "conversations.replies" if intent.thread_ts else "conversations.history"


def _retry_after(headers: Any) -> float:
    for name, value in dict(headers or {}).items():
        if name.lower() == "retry-after":
            value = value[0] if isinstance(value, list) and value else value
            try:
                return max(1.0, float(value))
            except (TypeError, ValueError):
                break
    return 1.0
