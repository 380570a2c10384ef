"""The run engine: plan a run, record it, submit, poll, retry, cancel, summarise.

The run database is the truth; the engine holds no run state of its own, so a restarted process
resumes every unfinished run by polling. Front ends reach the engine through `bot.api.Cyto`.

One module a job: `planning` checks a request; `actions` carries out what people ask (start,
release, abandon, retry, cancel); `submission` hands recorded attempts to the executor; `polling`
records what the executor reports and closes finished runs; `reading` reads a run back.
`transitions` and `logs` are the pure rules they use, `files` maps a run to its folders, and
`core` holds what they share. `Engine` is all of them on one object.
"""

from __future__ import annotations

from bot.engine.actions import Actions
from bot.engine.errors import AlreadyRetried, BadParameters, BatchInUse, EngineError, NotFound
from bot.engine.files import run_layout
from bot.engine.logs import last_error_line
from bot.engine.model import Failure, LogExcerpt, Plan, RunSummary
from bot.engine.planning import RESOURCE_LIMITS, Planning, new_run_id, validate_resources, with_overrides
from bot.engine.transitions import plan_transition
from bot.layout import LayoutError


class Engine(Actions, Planning):
    """The engine of one store, one executor and one run database."""


__all__ = ["RESOURCE_LIMITS", "AlreadyRetried", "BadParameters", "BatchInUse", "Engine", "EngineError",
           "Failure", "LayoutError", "LogExcerpt", "NotFound", "Plan", "RunSummary",
           "last_error_line", "new_run_id", "plan_transition", "run_layout", "validate_resources", "with_overrides"]
