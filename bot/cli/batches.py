"""`cyto batches`: what is in the store's Input/."""

from __future__ import annotations

import json

import click

from bot.cli import completion
from bot.cli.app import cli
from bot.cli.common import friendly_errors, json_option, open_session


@cli.command()
@click.argument("date", required=False, shell_complete=completion.complete_date)
@json_option
@friendly_errors
def batches(date: str | None, as_json: bool) -> None:
    """List the dates in the store, or the batches of DATE with their number of analyses."""
    from bot import json_views
    from bot.layout import parse_date

    cyto = open_session()
    cyto.check_store()
    if date is None:
        by_date = {d: cyto.batches(d) for d in cyto.dates()}
        if as_json:
            click.echo(json.dumps(json_views.dates_view(by_date), indent=2))
            return
        if not by_date:
            click.echo(f"{cyto.store_uri} has no Input/YYYY-MM-DD/ folders yet")
        for d, names in by_date.items():
            click.echo(f"{d}  {len(names)} batch{'es' if len(names) != 1 else ''}: {', '.join(names[:5])}"
                       f"{' …' if len(names) > 5 else ''}")
        return
    date = parse_date(date)
    counts = {name: len(cyto.analyses(date, name)) for name in cyto.batches(date)}
    if as_json:
        click.echo(json.dumps(json_views.batches_view(date, counts), indent=2))
        return
    if not counts:
        click.echo(f"no batches on {date}")
    for name, count in counts.items():
        click.echo(f"{name}  {count} analys{'es' if count != 1 else 'is'}")
