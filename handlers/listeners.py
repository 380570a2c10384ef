"""Bolt listeners: the `/cyto` slash command and the buttons of run messages. They parse, check who
may act, call `bot.api.Cyto` (through the shared `CytoBot`) and answer; what a run allows and how it
starts are decided in the library and in `CytoBot.start_run`, not here.

Each listener acknowledges at once (parsing and the permission check are pure and fast) and does
the slow part — listing the store, recording, submitting, Slack calls — in a lazy listener that
Bolt runs after the ack. A slash command acts once per `trigger_id` (a re-delivery is answered,
not acted on), and each command and button leaves one INFO audit line: who, where, what, which run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltRequest, Respond
from slack_sdk import WebClient

from bot.api import AlreadyRetried, BatchInUse, DatabaseError, EngineError
from bot.executors import ExecutorError
from bot.layout import LayoutError
from bot.states import RunState
from bot.store import StoreError
from handlers import render
from handlers.commands import (
    USAGE,
    CancelRequest,
    HelpRequest,
    ListRequest,
    Request,
    RetryRequest,
    RunRequest,
    StatusRequest,
    UsageError,
    parse,
)
from handlers.cyto_bot import CytoBot
from handlers.render import SlackMessage, mention, parse_value
from handlers.slack_state import Command

log = logging.getLogger(__name__)
audit = logging.getLogger("handlers.audit")
# What the engine and the store refuse with a message meant for the person who asked.
REFUSALS = (EngineError, LayoutError, StoreError, ExecutorError, DatabaseError)

Body = dict[str, Any]


def register(app: App, bot: CytoBot) -> None:
    from handlers import home, modal

    commands = Commands(bot)
    clicks = Clicks(bot)
    commands.form = modal.RunForm(bot, commands.run, REFUSALS)
    app.command("/cyto")(ack=commands.ack, lazy=[commands.handle])
    modal.register(app, commands.form)  # `/cyto run` alone: the run form (views.open, block_suggestion, …)
    app.event("app_home_opened")(home.Home(bot).opened)
    app.action(re.compile(rf"^({render.RETRY}|{render.RETRY_MORE_MEMORY}):\d+$"))(
        ack=_ack_click, lazy=[audited(clicks.retry_one)])
    app.action(re.compile(rf"^{render.RETRY_LISTED}:\d+$"))(ack=_ack_click, lazy=[audited(clicks.retry_listed)])
    app.action(render.RETRY_ALL)(ack=_ack_click, lazy=[audited(clicks.retry_all)])
    app.action(render.CANCEL)(ack=_ack_click, lazy=[audited(clicks.cancel)])


def audited(click: Callable[[Body, Respond], None]) -> Callable[[Body, Respond], None]:
    """A button listener that leaves one audit line (who, where, which button, which run)."""

    def listener(body: Body, respond: Respond) -> None:
        action = (body.get("actions") or [{}])[0]
        value = parse_value(action.get("value", ""))
        outcome = "done"
        try:
            click(body, respond)
        except Exception:
            outcome = "error"
            log.exception("button %s failed", action.get("action_id"))
            ephemeral(respond, "⚠️ Something went wrong on the bot's side; the operator can find it in the log.")
        finally:
            audit.info("button %s by %s in %s: run %s %s%s", str(action.get("action_id", "?"))[:60], _user(body),
                       _channel(body), str(value.get("r", "?"))[:20], str(value.get("a", ""))[:80], f" ({outcome})")

    listener.__name__ = click.__name__  # Bolt names lazy listeners by function name
    return listener


def _ack_click(ack: Ack) -> None:
    ack()


def thread_link(channel: str, ts: str) -> str:
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def _retry_num(request: BoltRequest | None) -> int | None:
    values = request.headers.get("x-slack-retry-num") if request is not None else None
    value = values[0] if values else None
    return int(value) if value and value.isdigit() and len(value) < 6 else None


def _run_word(outcome: str | None) -> str:
    return "done" if outcome is None else outcome if outcome in ("error", "refused") else f"run {outcome}"


def _response_url(respond: Respond) -> str | None:
    return getattr(respond, "response_url", None)


def ephemeral(respond: Respond, message: SlackMessage | str) -> None:
    if isinstance(message, str):
        message = render.text_message(message)
    respond(response_type="ephemeral", replace_original=False, **message.payload())


class Commands:
    def __init__(self, bot: CytoBot) -> None:
        self.bot = bot
        self.form: Any = None  # handlers.modal.RunForm, set by `register`

    def _check(self, body: Body) -> tuple[Request | None, str | None]:
        """The parsed request, or the ephemeral answer that ends it here."""
        try:
            request = parse(body.get("text", ""))
        except UsageError as exc:
            return None, f"{exc.reason}\n\n{exc.usage}"
        if isinstance(request, HelpRequest):
            return None, USAGE
        refusal = self.bot.permissions.refusal(body.get("user_id"), body.get("channel_id"))
        if refusal:
            return None, refusal
        return request, None

    def ack(self, ack: Ack, body: Body, client: WebClient) -> None:
        try:
            if self.form is not None and _wants_form(body):
                refusal = self.bot.permissions.refusal(body.get("user_id"), body.get("channel_id"))
                if refusal:
                    ack(text=refusal)
                    return
                ack()
                self.form.open(body, client)  # views.open within the trigger's 3 s
                return
            request, answer = self._check(body)
        except Exception:  # never a 500: Slack would show the user nothing at all
            log.exception("could not read a /cyto command")
            request, answer = None, "⚠️ Could not read this command; see `/cyto help`."
        if answer is not None:
            ack(text=answer)
        elif isinstance(request, RunRequest):
            ack(text=f"Looking at {render.escape(request.date)}/{render.escape(request.batch)}…")
        else:
            ack()

    def handle(self, body: Body, respond: Respond, request: BoltRequest | None = None) -> None:
        if self.form is not None and _wants_form(body):
            return  # the form opened in the ack
        try:
            parsed, _ = self._check(body)
        except Exception:
            return  # answered in the ack
        user, channel = str(body.get("user_id", "")), str(body.get("channel_id", ""))
        verb = str(body.get("text", "")).split(" ", 1)[0][:20] or "help"
        if parsed is None:
            audit.info("/cyto %s by %s in %s: refused or help", verb, user, channel)
            return  # answered in the ack
        trigger_id = str(body.get("trigger_id") or "")
        retry_num = _retry_num(request)
        if trigger_id:
            earlier = self.bot.state.first_delivery(trigger_id, user, channel,
                                                             str(body.get("text", ""))[:500], retry_num,
                                                             self.bot.clock())
            if earlier is not None:
                audit.info("/cyto %s by %s in %s: re-delivery (retry %s), not acted on", verb, user, channel,
                           retry_num)
                ephemeral(respond, self._already(earlier))
                return
        handlers: dict[type, Callable[[Any, str, str, Respond], str | None]] = {
            RunRequest: self.run, StatusRequest: self.status, RetryRequest: self.retry,
            CancelRequest: self.cancel, ListRequest: self.list,
        }
        outcome: str | None = "error"
        try:
            outcome = handlers[type(parsed)](parsed, user, channel, respond)
            if isinstance(parsed, RunRequest) and outcome and trigger_id:
                self.bot.state.command_started(trigger_id, outcome)
        except REFUSALS as exc:
            outcome = "refused"
            ephemeral(respond, f"⚠️ {render.escape(str(exc))}")
        except Exception:
            log.exception("/cyto %s by %s failed", verb, user)
            ephemeral(respond, "⚠️ Something went wrong on the bot's side; nothing more was done. "
                               "The operator can find the error in the bot's log.")
        finally:
            audit.info("/cyto %s by %s in %s: %s", verb, user, channel, _run_word(outcome))

    def _already(self, earlier: Command) -> str:
        if earlier.run_id is None:
            return "This command was already received and is being (or has been) answered; nothing more was done."
        run = self.bot.cyto.get_run(earlier.run_id)
        if run.slack_channel and run.slack_thread_ts:
            return f"Already started: <{thread_link(run.slack_channel, run.slack_thread_ts)}|run `{run.id}`>"
        return f"Already started: run `{run.id}` ({run.state.value.lower()}); nothing more was submitted."

    def run(self, request: RunRequest, user: str, channel: str, respond: Respond) -> str | None:
        bot = self.bot
        plan = bot.cyto.plan(request.date, request.batch, pipeline=request.pipeline, vcpus=request.vcpus,
                             memory_mib=request.memory_mib, retries=request.retries, storage_gib=request.storage_gib,
                             timeout_s=request.timeout_s, params=request.params)
        try:
            run, waiting = bot.start_run(plan, user, channel, response_url=_response_url(respond),
                                         allow_concurrent=request.allow_concurrent)
        except BatchInUse as exc:
            ephemeral(respond, render.batch_in_use(exc.active, exc.done, exc.total, exc.started))
            return None
        if waiting:
            # Slack is slow or rate-limited: the outbox keeps trying; the run waits for its thread.
            ephemeral(respond, f"Slack is slow to answer: run `{run.id}` is recorded and waits for its thread "
                               "here before anything is submitted.")
        return run.id

    def status(self, request: StatusRequest, user: str, channel: str, respond: Respond) -> str | None:
        run_id = request.run_id
        if run_id is None:
            latest = self.bot.cyto.latest_run(channel) or next(iter(self.bot.cyto.runs(1)), None)
            if latest is None:
                ephemeral(respond, "No runs yet: start one with `/cyto run DATE BATCH`.")
                return None
            run_id = latest.id
        ephemeral(respond, render.status_message(self.bot.cyto.summary(run_id)))
        return run_id

    def retry(self, request: RetryRequest, user: str, channel: str, respond: Respond) -> str | None:
        retried = self.bot.cyto.retry(request.run_id, request.analysis, by=user, submit=False)
        if not retried:
            ephemeral(respond, f"Nothing to retry in run `{render.escape(request.run_id)}`: no analysis has "
                               "failed, or someone already retried them.")
            return request.run_id
        shown = ", ".join(render.escape(a) for a in retried[:20]) + \
            (f" and {len(retried) - 20} more" if len(retried) > 20 else "")
        ephemeral(respond, f"🔁 Retrying {shown} in run `{request.run_id}`; follow it in the run's thread.")
        self.bot.refresh_run(request.run_id)
        self.bot.submit_soon(request.run_id)
        return request.run_id

    def cancel(self, request: CancelRequest, user: str, channel: str, respond: Respond) -> str | None:
        cyto = self.bot.cyto
        if cyto.get_run(request.run_id).state == RunState.HELD and cyto.abandon(
                request.run_id, f"cancelled by {user} while it waited for its Slack thread"):
            self.bot.state.resolve_hold(request.run_id, "abandoned", f"cancelled by {user}", self.bot.clock())
            ephemeral(respond, f"⛔ Cancelled run `{request.run_id}` while it waited for its thread; "
                               "nothing was submitted.")
        elif cyto.cancel(request.run_id, by=user):
            ephemeral(respond, f"⛔ Cancelling run `{request.run_id}`.")
            self.bot.wake()
        else:
            run = cyto.get_run(request.run_id)
            ephemeral(respond, f"Run `{run.id}` is already {run.state.value.lower()}; nothing to cancel.")
        return request.run_id

    def list(self, request: ListRequest, user: str, channel: str, respond: Respond) -> str | None:
        cyto = self.bot.cyto
        runs = cyto.runs(10)
        if request.date is None:
            ephemeral(respond, render.runs_list(runs, dates=cyto.dates()))
        else:
            ephemeral(respond, render.runs_list(runs, date=request.date, batches=cyto.batches(request.date)))
        return None


class Clicks:
    def __init__(self, bot: CytoBot) -> None:
        self.bot = bot

    def _allowed(self, body: Body, respond: Respond) -> bool:
        refusal = self.bot.permissions.refusal(_user(body), _channel(body))
        if refusal:
            ephemeral(respond, refusal)
        return refusal is None

    def retry_one(self, body: Body, respond: Respond) -> None:
        if not self._allowed(body, respond):
            return
        action = body["actions"][0]
        value = parse_value(action.get("value", ""))
        run_id, analysis, attempt = value.get("r"), value.get("a"), value.get("n")
        if not isinstance(run_id, str) or not isinstance(analysis, str) or not isinstance(attempt, int):
            ephemeral(respond, "⚠️ This button is from an older version of the bot; use `/cyto retry`.")
            return
        memory = value.get("m") if action["action_id"].startswith(render.RETRY_MORE_MEMORY) else None
        # The attempt the person saw is part of the retry itself: the library refuses it (AlreadyRetried)
        # when the analysis has moved on, however close two clicks come.
        try:
            retried = self.bot.cyto.retry(run_id, analysis, by=_user(body), memory_mib=memory, submit=False,
                                          expected_attempt=attempt)
            if not retried:
                ephemeral(respond, f"{analysis} was already retried.")
        except AlreadyRetried as exc:
            ephemeral(respond, f"{analysis} was already retried by {mention(exc.by or 'someone')}.")
        except REFUSALS as exc:
            ephemeral(respond, f"⚠️ {render.escape(str(exc))}")
        self.bot.refresh_run(run_id)
        self.bot.submit_soon(run_id)

    def _allowed_run(self, body: Body, respond: Respond) -> str | None:
        """The run a root-message or listed-failures button acts on, when the clicker may act."""
        if not self._allowed(body, respond):
            return None
        run_id = parse_value(body["actions"][0].get("value", "")).get("r")
        return run_id if isinstance(run_id, str) else None

    def retry_listed(self, body: Body, respond: Respond) -> None:
        run_id = self._allowed_run(body, respond)
        message_ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
        if run_id is None or not message_ts:
            return
        listed = [(p.entry.analysis, p.entry.attempt) for p in self.bot.state.message(run_id, message_ts)
                  if not p.entry.detailed and not p.entry.retried_by]
        # Each with the attempt the message shows: one retried or changed meanwhile is left out.
        retried = self.bot.cyto.retry_many(run_id, listed, by=_user(body), submit=False)
        if not retried:
            ephemeral(respond, "These analyses were already retried.")
        self.bot.refresh_run(run_id)
        self.bot.submit_soon(run_id)

    def retry_all(self, body: Body, respond: Respond) -> None:
        run_id = self._allowed_run(body, respond)
        if run_id is None:
            return
        try:
            retried = self.bot.cyto.retry(run_id, None, by=_user(body), submit=False)
        except REFUSALS as exc:
            ephemeral(respond, f"⚠️ {render.escape(str(exc))}")
            return
        if not retried:
            ephemeral(respond, f"No failed analyses left to retry in run `{run_id}`.")
        self.bot.refresh_run(run_id)
        self.bot.submit_soon(run_id)

    def cancel(self, body: Body, respond: Respond) -> None:
        run_id = self._allowed_run(body, respond)
        if run_id is None:
            return
        try:
            cancelled = self.bot.cyto.cancel(run_id, by=_user(body))
        except REFUSALS as exc:
            ephemeral(respond, f"⚠️ {render.escape(str(exc))}")
            return
        if not cancelled:
            ephemeral(respond, f"Run `{run_id}` has already finished or is being cancelled.")
        self.bot.wake()


def _wants_form(body: Body) -> bool:
    from handlers.modal import wants_form

    return wants_form(body.get("text")) and bool(body.get("trigger_id"))


def _user(body: Body) -> str:
    return str((body.get("user") or {}).get("id") or body.get("user_id") or "someone")


def _channel(body: Body) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
