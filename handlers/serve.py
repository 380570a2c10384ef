"""`cyto serve`: the bot and its poll scheduler in one process.

    cyto serve                    Socket Mode (SLACK_APP_TOKEN): no public URL needed
    cyto serve --http --port 3000 Bolt's /slack/events on waitress, signed requests only, plus /healthz

The click command is in bot/cli/service.py; Slack and engine imports happen inside `serve`, so `cyto --help`
stays fast. Nothing here imports the CLI.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slack_bolt import App
    from waitress.server import BaseWSGIServer, MultiSocketServer

    from bot.settings import Settings
    from handlers.cyto_bot import CytoBot

log = logging.getLogger(__name__)
SLACK_JOB = "slack"
EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
MAX_BODY = 2_000_000  # Slack's payloads are far smaller

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _answer(start_response: Callable[..., Any], status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def wsgi_app(app: App, health: Callable[[], dict[str, Any]], signing_secret: str | None = None) -> WSGIApp:
    """Bolt's WSGI adapter for /slack/events and /healthz (503 when not ok).

    With a signing secret, a request's signature is checked here, before Bolt parses the body: Bolt
    answers a body it cannot parse, or a timestamp that is not a number, with a 500 (and logs it),
    whereas anything unsigned is simply not from Slack: 401."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from slack_sdk.signature import SignatureVerifier

    slack = SlackRequestHandler(app, path=EVENTS_PATH)
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            status = health()
            return _answer(start_response, "200 OK" if status["ok"] else "503 Service Unavailable", status)
        if verifier is not None and environ.get("PATH_INFO") == EVENTS_PATH:
            length = environ.get("CONTENT_LENGTH") or "0"
            body = environ["wsgi.input"].read(int(length)) if length.isdigit() and int(length) <= MAX_BODY else None
            timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""
            if body is None or not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) < 16) or \
                    not verifier.is_valid(body, timestamp, environ.get("HTTP_X_SLACK_SIGNATURE") or ""):
                log.info("rejected a request with a bad or missing Slack signature (401)")
                return _answer(start_response, "401 Unauthorized", {"error": "invalid request"})
            environ["wsgi.input"] = io.BytesIO(body)
        try:
            return slack(environ, start_response)
        except Exception as exc:  # a signed request Bolt cannot read: say so in one line, no body
            log.warning("could not read a signed request (%s); answered 400", type(exc).__name__)
            return _answer(start_response, "400 Bad Request", {"error": "unreadable request"})

    return application


def health_of(bot: CytoBot, scheduler_running: Callable[[], bool], poll_seconds: float,
              started: float) -> dict[str, Any]:
    """What /healthz reports: ok only when the scheduler runs, the last successful poll is recent,
    Slack accepts the bot's token and the run database is readable; the outbox backlog."""
    from pathlib import Path

    problems: list[str] = []
    status: dict[str, Any] = {"scheduler": scheduler_running()}
    if not status["scheduler"]:
        problems.append("the scheduler is not running")
    now = bot.clock()
    last = bot.last_poll_ok
    status["last_poll_s_ago"] = None if last is None else round(now - last, 1)
    if now - (last if last is not None else started) > 3 * poll_seconds:
        problems.append(f"no successful poll for {now - (last or started):.0f}s (every {poll_seconds:g}s expected)")
    if bot.sender.auth_problem:
        problems.append(f"Slack refuses the bot token ({bot.sender.auth_problem})")
    cyto = bot.cyto
    try:
        path = cyto.ledger_file()
        if path is not None and not Path(path).expanduser().exists():
            raise FileNotFoundError(f"{path} no longer exists")
        status["unfinished_runs"] = len(cyto.unfinished_run_ids())
        status["outbox_backlog"] = bot.sender.outbox.backlog()
    except Exception as exc:
        problems.append(f"the run database is unreadable: {exc}")
    status["ok"] = not problems
    if problems:
        status["problems"] = problems
    return status


def http_server(app: App, bot: CytoBot, host: str, port: int,
                scheduler_running: Callable[[], bool] = lambda: True,
                poll_seconds: float | None = None) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server (port 0 picks a free port: see `server.effective_port`)."""
    from waitress import create_server

    started = bot.clock()
    interval = poll_seconds if poll_seconds is not None else bot.cyto.settings.poll_seconds

    def health() -> dict[str, Any]:
        return health_of(bot, scheduler_running, interval, started)

    return create_server(wsgi_app(app, health, bot.cyto.settings.slack_signing_secret), host=host, port=port,
                         threads=8, ident="cyto-bot")


class StartFailure(RuntimeError):
    """The bot cannot start as configured; the message says why in one line (`cyto serve` exits 2)."""


def serve(use_http: bool, host: str, port: int) -> None:
    """Run the Slack bot and the poll scheduler until interrupted (`cyto serve`, bot/cli/service.py)."""
    from bot.scheduler import PollScheduler
    from bot.settings import ConfigError, Settings
    from handlers.app import build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in …" at every start
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise StartFailure(str(exc)) from None
    missing = [name for name, value in (
        ("SLACK_BOT_TOKEN", settings.slack_bot_token),
        ("SLACK_SIGNING_SECRET" if use_http else "SLACK_APP_TOKEN",
         settings.slack_signing_secret if use_http else settings.slack_app_token)) if not value]
    if missing:
        raise StartFailure(f"set {' and '.join(missing)} (from the Slack app's settings; see handlers/README.md)")
    bot = start_bot(settings)
    app = build_app(bot, signing_secret=settings.slack_signing_secret, token_verification=False)
    # The engine's poll and Slack's delivery are separate jobs: Slack's outages and rate limits
    # delay messages, never job state, automatic retries or submissions.
    scheduler = PollScheduler(bot.poll, settings.poll_seconds)
    scheduler.add(SLACK_JOB, bot.slack_cycle, settings.poll_seconds)
    bot.wake = scheduler.poll_now
    bot.wake_slack = lambda: scheduler.run_now(SLACK_JOB)
    unfinished = bot.cyto.unfinished_run_ids()
    log.info("resuming %d unfinished run(s); polling every %gs", len(unfinished), settings.poll_seconds)
    scheduler.start()  # first ticks at once: polls every unfinished run and catches Slack up
    socket_mode = None
    try:
        if use_http:
            server = http_server(app, bot, host, port, lambda: scheduler.running, settings.poll_seconds)
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


def start_bot(settings: Settings, failure: type[Exception] = StartFailure) -> CytoBot:
    """The bot, once the run database, the executor and Slack have answered; otherwise one line
    naming what is unreachable (and exit 2), not a traceback."""
    from slack_sdk.errors import SlackApiError

    from handlers.cyto_bot import CytoBot

    what = "the run database"
    try:
        bot = CytoBot.from_settings(settings)
        what = f"the {settings.executor} executor"
        bot.cyto.check_executor()
        what = f"Slack ({settings.slack_api_url or 'https://slack.com/api/'})"
        bot.client.auth_test()
    except SlackApiError as exc:
        raise failure(f"cannot start: {what} refused the bot token ({exc.response.get('error')}); "
                      "check SLACK_BOT_TOKEN") from None
    except Exception as exc:  # an outage or a misconfiguration: say which, in one line
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise failure(f"cannot start: {what} is unreachable or unusable: {detail}") from None
    return bot
