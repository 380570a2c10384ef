"""`cyto ledger migrate`: move a lab's run ledger into another database (SQLite to a shared
PostgreSQL, say). It also moves the Slack app's tables, so it names their schema (handlers/slack_schema.py)."""

from __future__ import annotations

import click

from bot.api import copy_ledger
from bot.cli.app import cli
from bot.cli.common import friendly_errors


@cli.group()
def ledger() -> None:
    """The run database (CYTO_DB): move it to another database."""


@ledger.command()
@click.option("--from", "source", required=True, metavar="URL",
              help="The ledger to copy: sqlite:///path (or a path) or postgresql://…")
@click.option("--to", "target", required=True, metavar="URL",
              help="An empty database to copy it into: postgresql://user@host/db, or sqlite:///path.")
@friendly_errors
def migrate(source: str, target: str) -> None:
    """Copy every run, job, attempt, event and Slack record into an empty ledger, then check the counts.

    Refuses a target that holds anything (nothing is overwritten); the source is left as it was. Stop
    `cyto serve` first, then point CYTO_DB at the target.

    Example: cyto ledger migrate --from ~/.local/state/cyto-bot/runs.sqlite --to postgresql://cyto@db.lab/cyto
    """
    from handlers.slack_schema import SLACK_SCHEMA

    counts = copy_ledger(source, target, components=[SLACK_SCHEMA])
    copied = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
    click.echo(f"copied {copied or 'an empty ledger'}; the counts match. Point CYTO_DB at the new ledger.")
