"""Assemble the bot: one engine session, one Slack client, the reporter, and the Bolt app."""

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
        self.reporter = Reporter(cyto.engine, client, clock=clock)
        # Asks the scheduler for an early poll (after a run starts, a retry, a cancel); a no-op
        # until `serve` connects it, so tests drive `poll_cycle` themselves.
        self.wake: Callable[[], None] = lambda: None
        # Submitting thousands of analyses takes seconds; it runs here, not on Bolt's listener pool,
        # whose threads must stay free to acknowledge the next requests within Slack's 3 s.
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cyto-submit")

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Callable[[float], None] = time.sleep,
                      executor: Executor | None = None) -> CytoBot:
        client = make_client(settings.slack_bot_token, settings.slack_api_url, sleep=sleep)
        return cls(Cyto(settings, executor=executor), client, Permissions.from_settings(settings))

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

    def poll_cycle(self) -> None:
        """One scheduler tick: poll the executor, then bring Slack up to date from the database."""
        self.engine.poll()
        self.reporter.sync()


def build_app(bot: CytoBot, *, signing_secret: str | None = None, token_verification: bool = True) -> App:
    """The Bolt app. Over HTTP every request must carry a valid Slack signature (`signing_secret`);
    Socket Mode requests arrive over the app's own authenticated WebSocket."""
    from handlers.listeners import register

    # process_before_response: the (fast, pure) ack runs on the request's own thread and is answered
    # at once; otherwise Bolt queues it on the same pool as the lazy listeners, behind a burst of
    # slow ones, and polls for it every 10 ms. Lazy listeners still run after the ack, on the pool.
    app = App(client=bot.client, signing_secret=signing_secret or "", process_before_response=True,
              token_verification_enabled=token_verification, logger=log,
              listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="cyto-listener"))
    register(app, bot)
    return app
