"""Assemble the bot: one engine session, one Slack client, the reporter (plans Slack messages into
the outbox), the sender (delivers them), and the Bolt app.

The engine's poll and Slack's delivery are separate steps with separate fates: `cyto serve` runs
them as two scheduler jobs, so a Slack outage or a huge Retry-After delays messages only, never job
state, retries or submissions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.api import Cyto
from bot.executors import Executor
from bot.settings import Settings
from handlers.permissions import Permissions
from handlers.reporter import Reporter
from handlers.sender import Sender
from handlers.slack_client import make_client

log = logging.getLogger(__name__)
LISTENER_THREADS = 4


class CytoBot:
    """What the listeners and the scheduler share. Holds no run state: the database does."""

    def __init__(self, cyto: Cyto, client: WebClient, permissions: Permissions, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cyto = cyto
        self.engine = cyto.engine
        self.client = client
        self.permissions = permissions
        self.clock = clock
        self.reporter = Reporter(cyto.engine, clock=clock)
        self.sender = Sender(cyto.engine, client, clock=clock, on_release=self.submit_soon)
        # Ask the scheduler for an early poll (after a run starts, a retry, a cancel) or an early
        # Slack delivery; no-ops until `serve` connects them, so tests drive the steps themselves.
        self.wake: Callable[[], None] = lambda: None
        self.wake_slack: Callable[[], None] = lambda: None
        self.last_poll_ok: float | None = None
        # Submitting thousands of analyses takes seconds; it runs here, not on Bolt's listener pool,
        # whose threads must stay free to acknowledge the next requests within Slack's 3 s.
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cyto-submit")

    @classmethod
    def from_settings(cls, settings: Settings, *, executor: Executor | None = None,
                      clock: Callable[[], float] = time.time) -> CytoBot:
        client = make_client(settings.slack_bot_token, settings.slack_api_url)
        return cls(Cyto(settings, executor=executor), client, Permissions.from_settings(settings), clock=clock)

    def submit_soon(self, run_id: str) -> None:
        def submit() -> None:
            try:
                self.engine.submit_pending(run_id)
            except Exception:  # the next poll submits what is still pending
                log.exception("submitting run %s failed; the next poll retries", run_id)
            self.wake()

        self._background.submit(submit)

    def close(self) -> None:
        """Wait for submissions under way (anything left is submitted by the next poll anyway)."""
        self._background.shutdown(wait=True)

    def poll(self) -> None:
        """The engine's scheduler job: poll the executor, record, retry, submit. No Slack call."""
        self.engine.poll()
        self.last_poll_ok = self.clock()
        self.wake_slack()

    def slack_cycle(self) -> int:
        """Slack's scheduler job: plan messages from the database, then deliver what is due."""
        self.sender.check_auth()
        self.reporter.plan()
        return self.sender.deliver()

    def poll_cycle(self) -> None:
        """Both steps one after the other (tests and benchmarks drive the bot with this)."""
        self.poll()
        self.slack_cycle()

    def refresh_run(self, run_id: str) -> None:
        """Show a change in the run's thread now (right after a click or a command)."""
        run = self.engine.get_run(run_id)
        self.reporter.plan_retried(run)
        self.sender.deliver(run_id=run_id, budget_s=2.0)


class QuietBolt(logging.Filter):
    """Bolt logs whole request bodies (with their `response_url`) at INFO when a signature is bad or
    a request is unhandled: 10 unsigned 1 MB posts would add 10 MB to the log. Below DEBUG those
    become one short line without the body; the warning that our `client` wins over the token
    Bolt read from SLACK_BOT_TOKEN (the same token) is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "`token` will be unused" in message:
            return False
        if logging.getLogger().isEnabledFor(logging.DEBUG) or record.levelno >= logging.ERROR:
            return True
        if message.startswith("Invalid request signature"):
            record.msg, record.args, record.levelno, record.levelname = (
                "rejected a request with a bad or missing Slack signature (401)", None, logging.INFO, "INFO")
        elif message.startswith("Unhandled request"):
            record.msg, record.args = "ignored a request no listener handles", None
        elif record.levelno < logging.WARNING:
            return False
        else:
            record.msg, record.args = message.split("(", 1)[0][:200], None
        return True


def bolt_logger() -> logging.Logger:
    logger = logging.getLogger("handlers.bolt")
    if not any(isinstance(f, QuietBolt) for f in logger.filters):
        logger.addFilter(QuietBolt())
    return logger


def build_app(bot: CytoBot, *, signing_secret: str | None = None, token_verification: bool = True) -> App:
    """The Bolt app. Over HTTP every request must carry a valid Slack signature (`signing_secret`);
    Socket Mode requests arrive over the app's own authenticated WebSocket."""
    from handlers.listeners import register

    # process_before_response: the (fast, pure) ack runs on the request's own thread and is answered
    # at once; otherwise Bolt queues it on the same pool as the lazy listeners, behind a burst of
    # slow ones, and polls for it every 10 ms. Lazy listeners still run after the ack, on the pool.
    app = App(client=bot.client, signing_secret=signing_secret or "", process_before_response=True,
              token_verification_enabled=token_verification, logger=bolt_logger(),
              listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="cyto-listener"))
    register(app, bot)
    return app
