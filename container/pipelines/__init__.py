"""Pipeline registry.

A pipeline is a module with a `run(ctx: PipelineContext) -> dict` function. It reads its inputs
from `ctx.input_dir` (the staged analysis folder), writes its outputs into `ctx.output_dir`, logs
through `ctx.log`, and returns a small JSON-able summary that goes into result.json.
It raises `ParameterError` for bad parameters and `InputError` for input it cannot read (both exit
2, never retried automatically) and `PipelineError` for any other failure the scientist should read
about (exit 1); the message is the last line of the log.

A pipeline also has a parameter check (`PARAMETER_CHECKS`): a pure function of the parameters,
cheap to import (no numpy, no matplotlib), that raises `ParameterError` or returns the parsed
parameters. The job calls it through `checked_params`; the bot calls it at plan time through
`check_with_folder` on the run's parameters and on each analysis's params.json, so a typo is
refused before anything is submitted, with the message the job would have given.

A parameter may name a file in the batch folder, beside the analysis folders, as `../name`
(`"gating_file": "../panel.wsp"`): the parsed parameters list such files in `batch_files`
(parameter -> name), the bot checks at plan time that they exist, and the entrypoint stages each
into `ctx.batch_dir` (nothing else of the batch folder is staged).
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

# name -> module path; modules are imported on demand so a job only loads what it runs.
PIPELINES: dict[str, str] = {
    "wordcount": "container.pipelines.wordcount",
    "cytometry": "container.pipelines.cytometry",
    "r-script": "container.pipelines.rscript",
    "fasta-kmers": "container.pipelines.fasta_kmers",
}
DEFAULT_PIPELINE = "cytometry"
# name -> "module:function" of the pipeline's parameter check (see the module docstring).
PARAMETER_CHECKS: dict[str, str] = {
    "wordcount": "container.pipelines.wordcount:check_params",
    "cytometry": "container.cytometry.params:parse",
    "r-script": "container.pipelines.rscript:check_params",
    "fasta-kmers": "container.pipelines.fasta_kmers:check_params",
}
# An analysis folder may carry its own parameters; they override the run's.
PARAMS_FILE = "params.json"
# A file named "../name" in the parameters lies in the batch folder, the analysis folder's parent.
BATCH_FOLDER = "../"


class PipelineError(RuntimeError):
    """The analysis failed for a reason the scientist can act on."""


class ParameterError(PipelineError):
    """The analysis's parameters are invalid."""


class InputError(PipelineError):
    """The analysis's input cannot be used as it is (no readable file): like a bad parameter, it would
    fail the same way again, so it exits 2 and is never retried automatically."""


class UnknownPipeline(LookupError):
    pass


@dataclass(frozen=True)
class PipelineContext:
    input_dir: Path
    output_dir: Path
    params: Mapping[str, Any]
    log: logging.Logger
    analysis: str = ""
    vcpus: float = 1
    memory_mib: int = 2048
    batch_dir: Path | None = None  # the batch-folder files the parameters name, staged ("../name")

    def path_of(self, name: str) -> Path:
        """Where a file the parameters name was staged: `a/b.wsp` in the analysis folder, `../b.wsp`
        in the batch folder; InputError when the job was given no batch folder."""
        batch_name = batch_file_name(name)
        if batch_name is None:
            return self.input_dir / name
        if self.batch_dir is None:
            raise InputError(f"{name} names a file in the batch folder, which this job was not given")
        return self.batch_dir / batch_name


T = TypeVar("T")
ParameterCheck = Callable[[Mapping[str, Any]], T]


def read_params_file(input_dir: Path) -> dict[str, Any]:
    """The analysis folder's params.json as a dict ({} when there is none)."""
    path = input_dir / PARAMS_FILE
    if not path.is_file():
        return {}
    return parse_params_file(path.read_bytes())


def parse_params_file(data: bytes, source: str = PARAMS_FILE) -> dict[str, Any]:
    """The content of a params.json as a dict; `source` names the file in the message."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ParameterError(f"{source} must hold a JSON object, not {type(parsed).__name__}")
    return parsed


def check_with_folder(
    check: ParameterCheck[T], run_params: Mapping[str, Any], folder_params: Mapping[str, Any],
    source: str = PARAMS_FILE,
) -> T:
    """Check the run's parameters on their own, then with the folder's params.json merged over them
    key by key (the folder wins); a problem of the merged set names `source`. Returns what the
    check returns for the parameters the analysis runs with."""
    result = check(run_params)
    if not folder_params:
        return result
    try:
        return check({**run_params, **folder_params})
    except ParameterError as exc:
        raise ParameterError(f"{source}: {exc}") from None


def checked_params(check: ParameterCheck[T], run_params: Mapping[str, Any], input_dir: Path) -> T:
    """What a job calls: its parameter check on CYTO_PARAMS and the staged folder's params.json."""
    return check_with_folder(check, run_params, read_params_file(input_dir))


def batch_file_name(value: str) -> str | None:
    """`panel.wsp` for `../panel.wsp` (a file in the batch folder); None for a path in the analysis folder."""
    return value.removeprefix(BATCH_FOLDER) if value.startswith(BATCH_FOLDER) else None


def batch_files(checked: Any) -> dict[str, str]:
    """Parameter -> name of each batch-folder file that a parameter check's result names."""
    return dict(getattr(checked, "batch_files", None) or {})


def parameter_check(name: str) -> ParameterCheck[Any] | None:
    """The pipeline's parameter check, imported without the pipeline itself (None if it has none)."""
    target = PARAMETER_CHECKS.get(name)
    if target is None:
        return None
    module_path, _, function = target.partition(":")
    check: ParameterCheck[Any] = getattr(importlib.import_module(module_path), function)
    return check


def unknown_parameters(unknown: Iterable[str], known: Iterable[str]) -> ParameterError:
    """The error for keys a pipeline does not take, with a did-you-mean for each close spelling."""
    known = sorted(known)
    names = sorted(unknown)
    parts: list[str] = []
    unmatched = False
    for name in names:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parts.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        unmatched = unmatched or not close
    noun = "parameter" if len(names) == 1 else "parameters"
    message = f"unknown {noun} {', '.join(parts)}"
    if unmatched:
        message += f"; known: {', '.join(known)}" if known else "; this pipeline takes no parameters"
    return ParameterError(message)


def available() -> list[str]:
    return sorted(PIPELINES)


def load(name: str) -> ModuleType:
    try:
        module_path = PIPELINES[name]
    except KeyError:
        raise UnknownPipeline(
            f"unknown pipeline {name!r}; choose one of: {', '.join(available())}"
        ) from None
    return importlib.import_module(module_path)
