"""The bot's shared state: one `Cyto` session (the only door into the engine), one Slack client, the
Slack component's tables, the reporter (plans Slack messages into the outbox) and the sender
(delivers them). The listeners act through it; `cyto serve` runs its two scheduler jobs. The Bolt
app around it is assembled in handlers/app.py.

The engine's poll and Slack's delivery are separate steps with separate fates: `cyto serve` runs
them as two scheduler jobs, so a Slack outage or a huge Retry-After delays messages only, never job
state, retries or submissions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slack_sdk import WebClient

from bot.api import Cyto, Plan, Run
from bot.executors import Executor
from bot.settings import Settings
from handlers.outbox import Outbox
from handlers.permissions import Permissions
from handlers.reporter import Reporter
from handlers.sender import Sender
from handlers.slack_client import make_client
from handlers.slack_schema import SLACK_SCHEMA
from handlers.slack_state import SlackState, root_key

log = logging.getLogger(__name__)


class CytoBot:
    """What the listeners and the scheduler share. Holds no run state: the database does."""

    def __init__(self, cyto: Cyto, client: WebClient, permissions: Permissions, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cyto = cyto
        self.client = client
        self.permissions = permissions
        self.clock = clock
        tables = cyto.component(SLACK_SCHEMA)
        self.state = SlackState(tables)
        self.outbox = Outbox(tables)
        self.reporter = Reporter(cyto, self.state, self.outbox, clock=clock)
        self.sender = Sender(cyto, client, self.state, self.outbox, clock=clock, on_release=self.submit_soon)
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

    def start_run(self, plan: Plan, user: str, channel: str, *, response_url: str | None = None,
                  allow_concurrent: bool = False) -> tuple[Run, bool]:
        """The start of a run from Slack, the one sequence every caller uses: the run is recorded held
        (no poll submits it), then its hold and root message intent in one transaction, and the root is
        posted now if Slack answers. The post's ts releases the run and submits it; a root that cannot
        be posted abandons it, nothing submitted (handlers/sender.py). A slow Slack leaves the run held
        while the outbox keeps trying. Returns the run and whether it still waits for its thread."""
        run = self.cyto.start(plan, user, slack_channel=channel, hold=True, allow_concurrent=allow_concurrent)
        self.state.hold(run.id, channel, user, response_url, self.clock())
        self.sender.deliver(key=root_key(run.id))
        hold = self.state.hold_of(run.id)
        return run, hold is not None and hold.state == "held"

    def submit_soon(self, run_id: str) -> None:
        def submit() -> None:
            try:
                self.cyto.submit_pending(run_id)
            except Exception:  # the next poll submits what is still pending
                log.exception("submitting run %s failed; the next poll retries", run_id)
            self.wake()

        self._background.submit(submit)

    def close(self) -> None:
        """Wait for submissions under way (anything left is submitted by the next poll anyway)."""
        self._background.shutdown(wait=True)

    def poll(self) -> None:
        """The engine's scheduler job: poll the executor, record, retry, submit. No Slack call."""
        self.cyto.poll()
        self.last_poll_ok = self.clock()
        self.wake_slack()

    def slack_cycle(self) -> int:
        """Slack's scheduler job: plan messages from the ledger's new events, then deliver what is due."""
        self.sender.check_auth()
        self.reporter.plan()
        return self.sender.deliver()

    def refresh_run(self, run_id: str) -> None:
        """Show a change in the run's thread now (right after a click or a command)."""
        run = self.cyto.get_run(run_id)
        self.reporter.plan_retried(run)
        self.sender.deliver(run_id=run_id, budget_s=2.0)
