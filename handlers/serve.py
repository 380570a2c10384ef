"""`cyto serve`: the bot and its poll scheduler in one process.

    cyto serve                    Socket Mode (SLACK_APP_TOKEN): no public URL needed
    cyto serve --http --port 3000 Bolt's /slack/events on waitress, signed requests only, plus /healthz

Slack and engine imports happen inside the command, so `cyto --help` stays fast.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from slack_bolt import App
    from waitress.server import BaseWSGIServer, MultiSocketServer

    from handlers.app import CytoBot

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_app(app: App, health: Callable[[], dict[str, Any]]) -> WSGIApp:
    """Bolt's WSGI adapter for /slack/events (it verifies signatures), and /healthz."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            body = json.dumps(health()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return slack(environ, start_response)

    return application


def http_server(app: App, bot: CytoBot, host: str, port: int,
                scheduler_running: Callable[[], bool] = lambda: True) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server (port 0 picks a free port: see `server.effective_port`)."""
    from waitress import create_server

    def health() -> dict[str, Any]:
        return {"ok": True, "scheduler": scheduler_running(),
                "unfinished_runs": len(bot.engine.db.unfinished_run_ids())}

    return create_server(wsgi_app(app, health), host=host, port=port, threads=8, ident="cyto-bot")


class ServerThread:
    """A waitress server on a background thread that stops cleanly (tests, benchmarks)."""

    def __init__(self, server: BaseWSGIServer | MultiSocketServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.run, name="cyto-http", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        # Closing from inside the server's own loop empties its socket map, which ends the loop;
        # closing from another thread would pull the sockets from under a running select().
        self.server.trigger.pull_trigger(self.server.close)
        self.thread.join(timeout)
        self.server.task_dispatcher.shutdown()


def start_in_thread(server: BaseWSGIServer | MultiSocketServer) -> ServerThread:
    return ServerThread(server)


@click.command("serve")
@click.option("--http", "use_http", is_flag=True,
              help="Serve Slack's HTTP requests on /slack/events instead of Socket Mode.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on with --http.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on with --http.")
def serve(use_http: bool, host: str, port: int) -> None:
    """Run the Slack bot and the poll scheduler; resumes every unfinished run on start.

    Needs SLACK_BOT_TOKEN, and SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (--http).
    Example: `cyto serve --http --port 3000`
    """
    from bot.cli import UsageFailure
    from bot.db import DatabaseError
    from bot.executors import ExecutorError
    from bot.scheduler import PollScheduler
    from bot.settings import ConfigError, Settings
    from bot.store import StoreError
    from handlers.app import CytoBot, build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    missing = [name for name, value in (
        ("SLACK_BOT_TOKEN", settings.slack_bot_token),
        ("SLACK_SIGNING_SECRET" if use_http else "SLACK_APP_TOKEN",
         settings.slack_signing_secret if use_http else settings.slack_app_token)) if not value]
    if missing:
        raise UsageFailure(f"set {' and '.join(missing)} (from the Slack app's settings; "
                                   "see handlers/README.md)")
    try:
        bot = CytoBot.from_settings(settings)
        unfinished = bot.engine.db.unfinished_run_ids()
    except (DatabaseError, StoreError, ExecutorError) as exc:
        raise UsageFailure(str(exc)) from None
    app = build_app(bot, signing_secret=settings.slack_signing_secret)
    scheduler = PollScheduler(bot.poll_cycle, settings.poll_seconds)
    bot.wake = scheduler.poll_now
    log.info("resuming %d unfinished run(s); polling every %gs", len(unfinished), settings.poll_seconds)
    scheduler.start()  # its first tick runs at once: polls every unfinished run and catches Slack up
    socket_mode = None
    try:
        if use_http:
            server = http_server(app, bot, host, port, lambda: scheduler.running)
            log.info("serving %s and %s on http://%s:%s", EVENTS_PATH, HEALTH_PATH, host, server.effective_port)
            server.run()
        else:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            socket_mode = SocketModeHandler(app, settings.slack_app_token)
            socket_mode.start()
    except KeyboardInterrupt:
        pass
    finally:
        # Stop taking commands before the scheduler and the submit worker stop.
        if socket_mode is not None:
            socket_mode.close()
        scheduler.shutdown(wait=False)
        bot.close()


if __name__ == "__main__":
    serve()
