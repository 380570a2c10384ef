"""Plan-time check of the files an analysis's parameters name in the batch folder.

A parameter may name a file beside the analysis folders as `../name` (`"gating_file":
"../panel.wsp"`: one FlowJo workspace for the whole batch). The job stages exactly that file from
`Input/{date}/{batch}/`; this check makes sure it is there before anything is recorded or submitted,
so a missing workspace is one message at `cyto run`, not a failed job per analysis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.layout import BatchRef
from bot.store import Store
from container.pipelines import BATCH_FOLDER, ParameterError, batch_files

# Analyses named in the message; the rest are counted.
_NAMED = 3


def check_batch_files(store: Store, ref: BatchRef, checked: Mapping[str, Any]) -> None:
    """Raise ParameterError naming the first batch-folder file that the checked parameters of some
    analysis (analysis -> what the pipeline's parameter check returned) name and the store lacks."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for analysis, parsed in checked.items():
        for key, name in batch_files(parsed).items():
            wanted.setdefault((key, name), []).append(analysis)
    for (key, name), analyses in wanted.items():
        if not store.exists(ref.input_prefix + name):
            raise ParameterError(
                f"{key}: {BATCH_FOLDER}{name} is not in the batch folder {store.uri_for(ref.input_prefix)} "
                f"(named for {_names(analyses)}); put {name} there, beside the analysis folders"
            )


def _names(analyses: list[str]) -> str:
    named = ", ".join(analyses[:_NAMED])
    return named + (f" and {len(analyses) - _NAMED} more" if len(analyses) > _NAMED else "")
