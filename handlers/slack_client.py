"""The Slack Web API client: `SLACK_API_URL` as base URL and no retry handlers of its own.

slack_sdk's default connection-error handler re-sends a request whose answer was lost, which for
`chat.postMessage` means a second message; its rate-limit handler sleeps inside the call. Both
decisions belong to the outbox sender (handlers/sender.py), which records a postponement instead of
sleeping and looks for a post by its key before posting again.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient

DEFAULT_BASE_URL = WebClient.BASE_URL
TIMEOUT_S = 15

# slack_sdk logs every lost connection at ERROR, before the sender decides what it means; the
# sender's own line says which message was postponed and why.
logging.getLogger("slack_sdk.web.base_client").setLevel(logging.CRITICAL)


def make_client(token: str | None, base_url: str | None = None, *, timeout: int = TIMEOUT_S) -> WebClient:
    base = base_url or DEFAULT_BASE_URL
    return WebClient(token=token, base_url=base if base.endswith("/") else base + "/", timeout=timeout,
                     retry_handlers=[])
