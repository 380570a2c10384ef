"""Shell completion of dates, batches, analyses and run ids for the `cyto` CLI (click's completion).

Each completer opens the session from the environment, as the command would, and answers with
nothing rather than an error: a completion must never print a traceback into the user's prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click
from click.shell_completion import CompletionItem

MAX_RUNS = 50


def _session() -> Any:
    from bot.api import Cyto

    return Cyto.from_env()


def _offer(produce: Callable[[], Iterable[CompletionItem]]) -> list[CompletionItem]:
    """What a completer finds; nothing when the session cannot say (completion never fails)."""
    try:
        return list(produce())
    except Exception:
        return []


def complete_date(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _offer(lambda: (CompletionItem(d) for d in reversed(_session().dates()) if d.startswith(incomplete)))


def complete_batch(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    date = ctx.params.get("date")
    if not date:
        return []
    return _offer(lambda: (CompletionItem(b) for b in _session().batches(date) if b.startswith(incomplete)))


def complete_run(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _offer(lambda: (CompletionItem(r.id, help=f"{r.label} {r.pipeline} {r.state.value.lower()}")
                           for r in _session().runs(MAX_RUNS) if r.id.startswith(incomplete)))


def complete_analysis(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    run_id = ctx.params.get("run_id")
    if not run_id:
        return []
    return _offer(lambda: (CompletionItem(j.analysis) for j in _session().jobs(run_id)
                           if j.analysis.startswith(incomplete)))
