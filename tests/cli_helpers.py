"""The CLI as a user drives it, shared by the CLI test modules."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from bot.cli import cli

DATE, BATCH = "2018-12-05", "b7"


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def write_two_analyses(store: Path) -> None:
    """A01 and A02 of 2018-12-05/b7, one text file each: a word-count batch."""
    for name in ("A01", "A02"):
        path = store / f"Input/{DATE}/{BATCH}" / name / "x.txt"
        path.parent.mkdir(parents=True)
        path.write_text(f"{name} hello world\n")


def write_two_analyses_a02_failing(store: Path) -> None:
    """`write_two_analyses`, with A02 failing: its params.json names a file that is not there."""
    write_two_analyses(store)
    (store / f"Input/{DATE}/{BATCH}/A02/params.json").write_text(json.dumps({"files": ["gone.txt"]}))
