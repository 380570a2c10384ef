"""Plan-time parameter check: the pipeline's own check, run before anything is recorded or submitted.

The check is the function the job itself runs (container.pipelines.PARAMETER_CHECKS), applied to
the run's parameters and to each analysis's params.json merged over them, so a typo is refused
with the message the job would have given, minutes (and paid Batch time) earlier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.layout import BatchRef
from bot.store import ObjectNotFound, Store
from container.pipelines import (
    PARAMS_FILE,
    ParameterError,
    check_with_folder,
    parameter_check,
    parse_params_file,
)

# Parallel GETs when a batch has many params.json files (S3 answers each in tens of milliseconds).
READ_WORKERS = 16
# Analyses named after the first problem, so one line says how widespread it is.
_MORE_NAMED = 3


def check_parameters(store: Store, ref: BatchRef, analyses: Sequence[str], pipeline: str,
                     params: Mapping[str, Any]) -> None:
    """Raise ParameterError when the pipeline's check refuses the run's parameters, or those of any
    analysis with its params.json merged over them (the message names that analysis)."""
    check = parameter_check(pipeline)
    if check is None:
        return
    check(params)  # the run's own parameters first: one message, no store reads
    problems: list[tuple[str, str]] = []
    for analysis, data in read_params_files(store, ref, analyses).items():
        source = f"{analysis}/{PARAMS_FILE}"
        try:
            check_with_folder(check, params, parse_params_file(data, source), source)
        except ParameterError as exc:
            problems.append((analysis, str(exc)))
    if problems:
        raise ParameterError(problems[0][1] + _also(sorted(a for a, _ in problems[1:])))


def read_params_files(store: Store, ref: BatchRef, analyses: Sequence[str]) -> dict[str, bytes]:
    """The params.json of each analysis that has one, in analysis order.

    One listing of the batch finds them (a page holds 1,000 keys, so this is cheaper than asking
    for every analysis's file), and only those are read, in parallel."""
    wanted = {f"{ref.input_prefix}{name}/{PARAMS_FILE}": name for name in analyses}
    keys = [info.key for info in store.list_objects(ref.input_prefix) if info.key in wanted]
    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(keys))) as pool:
        contents = list(pool.map(lambda key: _read(store, key), keys))
    found = {wanted[key]: data for key, data in zip(keys, contents, strict=True) if data is not None}
    return {name: found[name] for name in analyses if name in found}


def _read(store: Store, key: str) -> bytes | None:
    try:
        return store.read_bytes(key)
    except ObjectNotFound:  # removed since the listing: the job will not see it either
        return None


def _also(others: list[str]) -> str:
    if not others:
        return ""
    named = ", ".join(others[:_MORE_NAMED])
    more = f" and {len(others) - _MORE_NAMED} more" if len(others) > _MORE_NAMED else ""
    return f" (parameter problems in {named}{more} too)"
