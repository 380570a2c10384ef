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
# A listing page (1,000 keys) takes S3 about as long as five GETs, and READ_WORKERS GETs run at
# once: above about 1000 / (16 * 5) = 12 objects per analysis, asking for each params.json is faster.
LIST_PAGE = 1000
LIST_OBJECTS_PER_ANALYSIS = 12
# Analyses named after the first problem, so one line says how widespread it is.
_MORE_NAMED = 3


def check_parameters(store: Store, ref: BatchRef, analyses: Sequence[str], pipeline: str,
                     params: Mapping[str, Any]) -> dict[str, Any]:
    """Raise ParameterError when the pipeline's check refuses the run's parameters, or those of any
    analysis with its params.json merged over them (the message names that analysis).

    Returns what the check returned for each analysis (the parameters it runs with), {} for a
    pipeline without a check."""
    check = parameter_check(pipeline)
    if check is None:
        return {}
    checked_run = check(params)  # the run's own parameters first: one message, no store reads
    checked = dict.fromkeys(analyses, checked_run)
    problems: list[tuple[str, str]] = []
    for analysis, data in read_params_files(store, ref, analyses).items():
        source = f"{analysis}/{PARAMS_FILE}"
        try:
            checked[analysis] = check_with_folder(check, params, parse_params_file(data, source), source)
        except ParameterError as exc:
            problems.append((analysis, str(exc)))
    if problems:
        raise ParameterError(problems[0][1] + _also(sorted(a for a, _ in problems[1:])))
    return checked


def read_params_files(store: Store, ref: BatchRef, analyses: Sequence[str]) -> dict[str, bytes]:
    """The params.json of each analysis that has one, in analysis order, read in parallel."""
    listed, unlisted = find_params_files(store, ref, analyses)
    keys = [*listed.values(), *(f"{ref.input_prefix}{name}/{PARAMS_FILE}" for name in unlisted)]
    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(keys))) as pool:
        contents = list(pool.map(lambda key: _read(store, key), keys))
    found = {key.removeprefix(ref.input_prefix).partition("/")[0]: data
             for key, data in zip(keys, contents, strict=True) if data is not None}
    return {name: found[name] for name in analyses if name in found}


def find_params_files(store: Store, ref: BatchRef, analyses: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(analysis -> key of its params.json, analyses still to ask for theirs).

    One listing of the batch finds them while it is cheap: a page holds 1,000 keys, so with a few
    files per analysis it costs far fewer requests than asking for every analysis's file. When the
    analyses turn out to hold many files each (a plate of 96 FCS files), listing on would cost more
    than asking directly, so the listing stops and the analyses it has not passed yet are returned
    to be asked for one by one (in parallel)."""
    wanted = set(analyses)
    listed: dict[str, str] = {}
    passed: set[str] = set()
    current = None
    # A store lists one analysis's objects together (a common key prefix), so an analysis is
    # passed once the listing has moved on to the next one.
    for seen, info in enumerate(store.list_objects(ref.input_prefix), start=1):
        name, _, rest = info.key.removeprefix(ref.input_prefix).partition("/")
        if name != current:
            if current is not None:
                passed.add(current)
            current = name
        if rest == PARAMS_FILE and name in wanted:
            listed[name] = info.key
        if seen >= LIST_PAGE and seen > LIST_OBJECTS_PER_ANALYSIS * len(passed):
            return listed, [a for a in analyses if a not in passed and a not in listed]
    return listed, []


def _read(store: Store, key: str) -> bytes | None:
    try:
        return store.read_bytes(key)
    except ObjectNotFound:  # an analysis without one (or it was removed since the listing)
        return None


def _also(others: list[str]) -> str:
    if not others:
        return ""
    named = ", ".join(others[:_MORE_NAMED])
    more = f" and {len(others) - _MORE_NAMED} more" if len(others) > _MORE_NAMED else ""
    return f" (parameter problems in {named}{more} too)"
