"""`cyto serve` and `cyto doctor`: the only commands that import the Slack front end (handlers/)."""

from __future__ import annotations

import sys

import click

from bot.cli.app import cli
from bot.cli.common import EXIT_USAGE, UsageFailure
from bot.settings import ConfigError, Settings


@cli.command()
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
    from handlers.serve import StartFailure
    from handlers.serve import serve as serve_bot

    try:
        serve_bot(use_http, host, port)
    except StartFailure as exc:
        raise UsageFailure(str(exc)) from None


@cli.command()
@click.option("--no-slack", "skip_slack", is_flag=True,
              help="Skip the Slack checks (CLI-only use; implied when no SLACK_* token is set).")
def doctor(skip_slack: bool) -> None:
    """Check the configuration against the live services, one line per check.

    Exit codes: 0 every check passed, 1 a service or set-up check failed, 2 the configuration
    itself is invalid (an environment variable with a bad value).
    """
    import os

    from bot.doctor import CONFIG_FIX, SLACK_NOT_CHECKED, Check, render, run_checks, slack_configured, verdict

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        click.echo(Check("Configuration", False, str(exc), CONFIG_FIX).line())
        sys.exit(EXIT_USAGE)
    slack = not skip_slack and slack_configured(os.environ)
    front_end = []
    if slack:
        from handlers.slack_check import SLACK_CHECKS

        front_end.append(SLACK_CHECKS)
    checks = run_checks(settings, front_end=front_end)
    click.echo(render(checks))
    if not slack and not skip_slack:
        click.echo(SLACK_NOT_CHECKED)
    line, code = verdict(checks)
    click.echo(line)
    sys.exit(code)
