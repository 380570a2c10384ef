"""The Bolt app around the bot (handlers/cyto_bot.py): its listeners, its listener pool, and a
logger that keeps Bolt's noise out of the bot's log."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App

from handlers.cyto_bot import CytoBot
from handlers.listeners import register

LISTENER_THREADS = 4


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
    # process_before_response: the (fast, pure) ack runs on the request's own thread and is answered
    # at once; otherwise Bolt queues it on the same pool as the lazy listeners, behind a burst of
    # slow ones, and polls for it every 10 ms. Lazy listeners still run after the ack, on the pool.
    app = App(client=bot.client, signing_secret=signing_secret or "", process_before_response=True,
              token_verification_enabled=token_verification, logger=bolt_logger(),
              listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="cyto-listener"))
    register(app, bot)
    return app
