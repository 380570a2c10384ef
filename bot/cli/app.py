"""The `cyto` click group; each command module adds its commands to it."""

from __future__ import annotations

import click

from bot import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cyto")
def cli() -> None:
    """cyto-bot: run every analysis of a batch as its own job, and follow the run.

    Configuration comes from environment variables (CYTO_STORE, CYTO_EXECUTOR, CYTO_DB, ...);
    with none set, the store is ~/cyto-data, jobs run as local processes and runs are kept in the
    user's state directory (`cyto doctor` prints where).
    """
